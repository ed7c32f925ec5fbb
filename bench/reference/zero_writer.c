/*
 * The zero-work writer: the limit `bench/bench.py --compare-zero` measures
 * Pulse against (issue 25, point 3). One thread, one epoll loop, a
 * hand-written WebSocket handshake and framing, and nothing else: each tick
 * is encoded once (envelope and frame header together) and the same bytes
 * are send()'t to every subscriber of its symbol.
 *
 * It speaks just enough of docs/PROTOCOL.md for pulse-loadgen's stream and
 * idle modes: `hello` -> `welcome`, `subscribe` to `ticker:` channels ->
 * one `subscribed` each, ticks at Pulse's schedule (`--tick-rate` steps per
 * second per symbol, spread evenly, symbols in turn), a WebSocket Ping to
 * every socket each `--heartbeat-ms`, and GET /healthz for bench.py. No
 * resume, no validation beyond what keeps it from crashing, no limits.
 * A socket that cannot take a frame whole keeps the rest in a buffer of its
 * own, written on EPOLLOUT; ticks that find a buffer in use are skipped
 * (as the Node reference skips past its bufferedAmount bound).
 *
 *   gcc -O2 -o zero-writer zero_writer.c
 *   ./zero-writer --addr 127.0.0.1:3998 --symbols 50 --tick-rate 2 --heartbeat-ms 15000
 *
 * Unknown flags with a value (Pulse's --seed, --db, ...) are ignored, so
 * bench.py passes it the same common flags as Pulse.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SYMBOLS 1024
#define IN_CAP 16384          /* a request or a client frame, at most */
#define OUT_CAP (1 << 20)     /* bytes kept for a socket that would block */

/* ---------------------------------------------------------------- SHA-1 */

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *msg = calloc(total, 1);
    memcpy(msg, data, len);
    msg[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) msg[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)msg[off + 4 * i] << 24 | (uint32_t)msg[off + 4 * i + 1] << 16 |
                   (uint32_t)msg[off + 4 * i + 2] << 8 | msg[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) {
            uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
            w[i] = x << 1 | x >> 31;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = (a << 5 | a >> 27) + f + e + k + w[i];
            e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(msg);
    for (int i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? abc[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---------------------------------------------------------------- state */

struct conn {
    int fd;
    int upgraded, ready;
    unsigned char in[IN_CAP];
    size_t in_len;
    unsigned char *out; /* bytes a send() did not take, written on EPOLLOUT */
    size_t out_len;
    int *subs; /* symbol indexes */
    int n_subs, cap_subs;
};

struct symbol {
    char name[32];
    uint64_t offset, volume;
    long cents, open;
    double sigma;
    struct conn **subscribers;
    int n, cap;
};

static struct symbol symbols[MAX_SYMBOLS];
static int n_symbols = 50;
static struct conn **conns; /* by fd */
static int max_fd;
static int epfd;
static uint64_t rng_state = 1;
static unsigned long ticks_skipped, next_connection = 1;

static double uniform(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

/* RFC 3339, UTC, microseconds, like Pulse's envelope timestamps. */
static int timestamp(char *out) {
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = (int)strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    return n + sprintf(out + n, ".%06ldZ", now.tv_nsec / 1000);
}

static double monotonic(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec / 1e9;
}

/* A server frame (FIN, unmasked) of `opcode` around `len` bytes at buf+10;
 * returns where the frame starts inside buf (its header is written just
 * before the payload) and its length. */
static unsigned char *frame(unsigned char *buf, size_t len, int opcode, size_t *frame_len) {
    unsigned char *payload = buf + 10;
    unsigned char *start;
    if (len < 126) {
        start = payload - 2;
        start[1] = (unsigned char)len;
    } else if (len < 65536) {
        start = payload - 4;
        start[1] = 126, start[2] = (unsigned char)(len >> 8), start[3] = (unsigned char)len;
    } else {
        start = payload - 10;
        start[1] = 127;
        for (int i = 0; i < 8; i++) start[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    start[0] = (unsigned char)(0x80 | opcode);
    *frame_len = (size_t)(payload + len - start);
    return start;
}

static void close_conn(struct conn *c);

/* Sends bytes, or keeps what the socket did not take. Returns 0, or -1
 * after closing the connection. */
static int send_bytes(struct conn *c, const unsigned char *bytes, size_t len) {
    if (c->out_len == 0) {
        ssize_t sent = send(c->fd, bytes, len, MSG_NOSIGNAL);
        if (sent == (ssize_t)len) return 0;
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                close_conn(c);
                return -1;
            }
            sent = 0;
        }
        bytes += sent, len -= (size_t)sent;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    if (c->out_len + len > OUT_CAP) {
        close_conn(c);
        return -1;
    }
    if (!c->out) c->out = malloc(OUT_CAP);
    memcpy(c->out + c->out_len, bytes, len);
    c->out_len += len;
    return 0;
}

static void flush_out(struct conn *c) {
    ssize_t sent = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
        return;
    }
    memmove(c->out, c->out + sent, c->out_len - (size_t)sent);
    c->out_len -= (size_t)sent;
    if (c->out_len == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Sends one text message as its own frame (answers, not ticks). */
static int send_text(struct conn *c, const char *text, size_t len) {
    unsigned char buf[4096 + 10];
    if (len > 4096) return 0;
    memcpy(buf + 10, text, len);
    size_t frame_len;
    unsigned char *start = frame(buf, len, 1, &frame_len);
    return send_bytes(c, start, frame_len);
}

static void close_conn(struct conn *c) {
    for (int i = 0; i < c->n_subs; i++) {
        struct symbol *s = &symbols[c->subs[i]];
        for (int j = 0; j < s->n; j++)
            if (s->subscribers[j] == c) {
                s->subscribers[j] = s->subscribers[--s->n];
                break;
            }
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->subs);
    free(c->out);
    free(c);
}

/* ---------------------------------------------------------------- protocol */

static void hello(struct conn *c) {
    char text[512], ts[40];
    timestamp(ts);
    int n = snprintf(text, sizeof text,
                     "{\"type\":\"welcome\",\"data\":{\"connection_id\":\"z%lu\",\"user\":null,"
                     "\"heartbeat_ms\":15000,\"max_message_bytes\":65536,\"build\":\"zero-work-writer\"},"
                     "\"timestamp\":\"%s\"}",
                     next_connection++, ts);
    c->ready = 1;
    send_text(c, text, (size_t)n);
}

/* Every `"channel":"ticker:NAME"` in the message, subscribed in turn. */
static void subscribe(struct conn *c, char *msg) {
    char *at = msg;
    while ((at = strstr(at, "\"channel\":\"ticker:")) != NULL) {
        at += strlen("\"channel\":\"ticker:");
        char *end = strchr(at, '"');
        if (!end) return;
        size_t len = (size_t)(end - at);
        for (int i = 0; i < n_symbols; i++) {
            if (strlen(symbols[i].name) != len || memcmp(symbols[i].name, at, len) != 0) continue;
            struct symbol *s = &symbols[i];
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->subscribers = realloc(s->subscribers, sizeof *s->subscribers * (size_t)s->cap);
            }
            s->subscribers[s->n++] = c;
            if (c->n_subs == c->cap_subs) {
                c->cap_subs = c->cap_subs ? c->cap_subs * 2 : 16;
                c->subs = realloc(c->subs, sizeof *c->subs * (size_t)c->cap_subs);
            }
            c->subs[c->n_subs++] = i;
            char text[512], ts[40];
            timestamp(ts);
            int n = snprintf(text, sizeof text,
                             "{\"type\":\"subscribed\",\"data\":{\"channel\":\"ticker:%s\",\"epoch\":\"zero\","
                             "\"offset\":%lu,\"recovered\":false,\"snapshot\":null},\"timestamp\":\"%s\"}",
                             s->name, (unsigned long)s->offset, ts);
            if (send_text(c, text, (size_t)n) < 0) return;
            break;
        }
        at = end;
    }
}

/* One complete text message from the client. */
static void on_message(struct conn *c, char *msg) {
    if (strstr(msg, "\"type\":\"hello\"")) hello(c);
    else if (c->ready && strstr(msg, "\"type\":\"subscribe\"")) subscribe(c, msg);
}

/* Client frames (masked): text -> on_message, close -> close, the rest ignored. */
static void read_frames(struct conn *c) {
    int fd = c->fd; /* c may be freed by a close below */
    size_t at = 0;
    while (c->in_len - at >= 2) {
        unsigned char *f = c->in + at;
        int opcode = f[0] & 15;
        size_t len = f[1] & 127, head = 2;
        if (len == 126) {
            if (c->in_len - at < 4) break;
            len = (size_t)f[2] << 8 | f[3], head = 4;
        } else if (len == 127) {
            close_conn(c); /* no client message of ours is that long */
            return;
        }
        int masked = f[1] & 128;
        if (masked) head += 4;
        if (head + len > IN_CAP) {
            close_conn(c);
            return;
        }
        if (c->in_len - at < head + len) break;
        unsigned char *payload = f + head;
        if (masked)
            for (size_t i = 0; i < len; i++) payload[i] ^= f[head - 4 + (i & 3)];
        if (opcode == 8) {
            unsigned char buf[16];
            size_t frame_len;
            unsigned char *start = frame(buf, 0, 8, &frame_len);
            send(c->fd, start, frame_len, MSG_NOSIGNAL);
            close_conn(c);
            return;
        }
        if (opcode == 1) {
            char saved = (char)payload[len];
            payload[len] = 0; /* the next frame's first byte, or spare room */
            on_message(c, (char *)payload);
            if (conns[fd] != c) return; /* closed meanwhile */
            payload[len] = (unsigned char)saved;
        }
        at += head + len;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
}

/* The HTTP request: /healthz, or the WebSocket upgrade. */
static void read_request(struct conn *c) {
    c->in[c->in_len] = 0;
    char *end = strstr((char *)c->in, "\r\n\r\n");
    if (!end) return;
    if (strncmp((char *)c->in, "GET /healthz", 12) == 0) {
        const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        send(c->fd, ok, strlen(ok), MSG_NOSIGNAL);
        close_conn(c);
        return;
    }
    char *key = strcasestr((char *)c->in, "Sec-WebSocket-Key:");
    if (!key) {
        const char *bad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send(c->fd, bad, strlen(bad), MSG_NOSIGNAL);
        close_conn(c);
        return;
    }
    key += strlen("Sec-WebSocket-Key:");
    while (*key == ' ') key++;
    char joined[128];
    size_t key_len = strcspn(key, "\r\n ");
    if (key_len > 60) key_len = 60;
    int n = snprintf(joined, sizeof joined, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)key_len, key);
    unsigned char digest[20];
    char accept[32], response[256];
    sha1((unsigned char *)joined, (size_t)n, digest);
    base64(digest, 20, accept);
    n = snprintf(response, sizeof response,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    size_t used = (size_t)(end + 4 - (char *)c->in);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->upgraded = 1;
    if (send_bytes(c, (unsigned char *)response, (size_t)n) < 0) return;
    read_frames(c);
}

static void on_readable(struct conn *c) {
    int fd = c->fd; /* c may be freed by a close below */
    for (;;) {
        if (c->in_len >= IN_CAP - 1) {
            close_conn(c);
            return;
        }
        ssize_t got = recv(c->fd, c->in + c->in_len, IN_CAP - 1 - c->in_len, 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            close_conn(c);
            return;
        }
        if (got < 0) return;
        c->in_len += (size_t)got;
        if (c->upgraded) read_frames(c);
        else read_request(c);
        if (conns[fd] != c) return;
        if ((size_t)got < IN_CAP - 1 - c->in_len) return; /* drained */
    }
}

/* ---------------------------------------------------------------- ticks */

/* Moves one symbol's price, encodes the tick once, sends it to every subscriber. */
static void step(struct symbol *s) {
    static unsigned char buf[1024];
    double z = sqrt(-2 * log(1 - uniform())) * cos(2 * M_PI * uniform());
    long next = lround((double)s->cents * exp(s->sigma * z - s->sigma * s->sigma / 2));
    s->cents = next == s->cents ? next + (z >= 0 ? 1 : -1) : next;
    if (s->cents < 1) s->cents = 1;
    s->volume += (uint64_t)(1 + (int)(uniform() * 50)) * 100;
    s->offset++;
    long change = s->cents - s->open;
    char ts[40];
    timestamp(ts);
    int len = snprintf((char *)buf + 10, sizeof buf - 10,
                       "{\"type\":\"tick\",\"data\":{\"channel\":\"ticker:%s\",\"offset\":%lu,\"symbol\":\"%s\","
                       "\"price\":%.2f,\"change\":%.2f,\"change_pct\":%.2f,\"volume\":%lu},\"timestamp\":\"%s\"}",
                       s->name, (unsigned long)s->offset, s->name, s->cents / 100.0, change / 100.0,
                       (double)change * 100.0 / (double)s->open, (unsigned long)s->volume, ts);
    size_t frame_len;
    unsigned char *start = frame(buf, (size_t)len, 1, &frame_len);
    /* Backwards: a send that closes a subscriber swap-removes it from this list. */
    for (int i = s->n - 1; i >= 0; i--) {
        if (i >= s->n) continue;
        struct conn *c = s->subscribers[i];
        if (c->out_len > 0) ticks_skipped++;
        else send_bytes(c, start, frame_len);
    }
}

static void ping_all(void) {
    unsigned char buf[16];
    size_t frame_len;
    unsigned char *start = frame(buf, 0, 9, &frame_len);
    for (int fd = 0; fd <= max_fd; fd++)
        if (conns[fd] && conns[fd]->upgraded) send_bytes(conns[fd], start, frame_len);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1:3998";
    double tick_rate = 2, heartbeat_ms = 15000;
    const char *symbol_flag = "50";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--symbols")) symbol_flag = argv[i + 1];
        else if (!strcmp(argv[i], "--tick-rate")) tick_rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--heartbeat-ms")) heartbeat_ms = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) rng_state = strtoull(argv[i + 1], NULL, 10);
    }
    n_symbols = atoi(symbol_flag);
    if (n_symbols < 1 || n_symbols > MAX_SYMBOLS) n_symbols = 50;
    for (int i = 0; i < n_symbols; i++) {
        struct symbol *s = &symbols[i];
        snprintf(s->name, sizeof s->name, "SYM%d", i);
        s->open = s->cents = 1000 + (long)(uniform() * 49000);
        s->sigma = 0.0004 + uniform() * 0.0021;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    max_fd = (int)(limit.rlim_cur > 1 << 20 ? 1 << 20 : limit.rlim_cur);
    conns = calloc((size_t)max_fd + 1, sizeof *conns);

    char host[64];
    const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sin.sin_addr);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(listener, 4096) < 0) {
        perror("listen");
        return 1;
    }
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);

    double per_second = tick_rate * n_symbols, started = monotonic();
    double next_ping = started + heartbeat_ms / 1000;
    unsigned long done = 0;
    struct epoll_event events[256];
    for (;;) {
        double now = monotonic();
        int timeout = 1000;
        if (per_second > 0) {
            double next_tick = started + (double)(done + 1) / per_second;
            timeout = next_tick <= now ? 0 : (int)((next_tick - now) * 1000) + 1;
        }
        int n = epoll_wait(epfd, events, 256, timeout);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (client > max_fd) {
                        close(client);
                        continue;
                    }
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = client;
                    conns[client] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, client, &cev);
                }
                continue;
            }
            struct conn *c = conns[fd];
            if (!c) continue;
            if (events[i].events & EPOLLOUT) {
                flush_out(c);
                if (conns[fd] != c) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        now = monotonic();
        if (per_second > 0) {
            unsigned long due = (unsigned long)((now - started) * per_second);
            if (due > done + per_second + 1) done = due - 1; /* after a stall, skip ahead */
            for (; done < due; done++) step(&symbols[done % (unsigned long)n_symbols]);
        }
        if (now >= next_ping) {
            ping_all();
            next_ping = now + heartbeat_ms / 1000;
        }
    }
}
