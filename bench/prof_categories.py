#!/usr/bin/env python3
"""Groups `perf record` profiles of a Pulse server (bench/prof_stream.sh) by
where the CPU went on the fan-out path, one column per group of runs
(averaged), as a Markdown table of samples per run:

  bench/prof_categories.py old1,old2 new1,new2      # labels given to prof_stream.sh

PROF_OUT: the directory prof_stream.sh wrote to (default /tmp/pulse-prof)."""
import collections, os, re, subprocess, sys

OUT = os.environ.get("PROF_OUT", "/tmp/pulse-prof")
def load(n):
    out=subprocess.run(['perf','report','-i',f'{OUT}/{n}.data','--no-children','--sort','dso,sym','-g','none','--stdio','-n'],capture_output=True,text=True).stdout
    d=collections.Counter()
    for l in out.splitlines():
        if l.startswith('#') or not l.strip(): continue
        parts=l.split(None,3)
        d[(parts[2], parts[3].strip())]+=int(parts[1])
    return d
CATS=[('fan-out (hub -> outbox push)', r'push_tick|HashMap<K,V,S,A>::insert|hash_one'),
 ('metrics (histograms, clock reads)', r'histogram|clock_gettime|Timespec|Instant>::|saturating_duration'),
 ('writer task (take, batch, send, wake)', r'writer::|Outbox::next|Outbox::take|retain|SplitSink|BiLock|sink::send::Send|PollFn|AtomicWaker|notify|Notified|tungstenite|Frame::|WebSocket|TcpStream::poll_write|Registration::poll|select|drop_in_place'),
 ('allocator', r'malloc|free|finish_grow|grow_one|_int_'),
 ('tokio scheduler', r'tokio::runtime'),
]
def cat(dso,sym):
    if 'kernel' in dso: return 'kernel'
    for name,rx in CATS:
        if re.search(rx,sym): return name
    return 'other user space'
groups=[g.split(',') for g in sys.argv[1:]]
res=[]
for g in groups:
    c=collections.Counter()
    for n in g:
        for (dso,sym),v in load(n).items(): c[cat(dso,sym)]+=v
    res.append({k:v/len(g) for k,v in c.items()})
names=['kernel']+[n for n,_ in CATS]+['other user space']
print('| samples per 15 s run |'+'|'.join(sys.argv[1:])+'|')
for n in names: print('| '+n+' | '+' | '.join(f"{r.get(n,0):.0f}" for r in res)+' |')
print('| all | '+' | '.join(f"{sum(r.values()):.0f}" for r in res)+' |')
