// What the Node benchmark scripts share to talk to a Pulse server: their
// `--name value` flags, guest sign-in, and a signed-in WebSocket whose
// messages come unpacked from `batch` frames. Uses Node 20's built-in
// WebSocket (`node --experimental-websocket`), so no npm package.

/** The `--name value` pairs of the command line, as an object. */
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(
    argv.reduce((pairs, arg, n, all) => {
      if (arg.startsWith("--")) pairs.push([arg.slice(2), all[n + 1]]);
      return pairs;
    }, []),
  );
}

/** Signs `name` in as a guest at `url`; answers its token. */
export async function login(url, name) {
  const response = await fetch(`${url}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`login ${name}: ${response.status}`);
  return (await response.json()).token;
}

/**
 * Opens a socket to `url`, says hello with `token`, and calls `onMessage`
 * for every message (batches unpacked, in order); resolves with the socket
 * once welcomed.
 */
export function connect(url, token, onMessage = () => {}) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url.replace(/^http/, "ws") + "/ws");
    socket.onerror = () => reject(new Error("socket error"));
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", data: { token } }));
    socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data));
      const messages = frame.type === "batch" ? frame.data.messages : [frame];
      for (const message of messages) {
        if (message.type === "welcome") resolve(socket);
        onMessage(message);
      }
    };
  });
}
