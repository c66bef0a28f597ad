// Forwards every connection on a Unix socket to host:port. Run inside a network namespace by a multi-host
// test, it lets the test process (outside every namespace) reach a server there: a Unix socket is a
// filesystem object, which network namespaces do not separate.
// Usage: node unix-relay.cjs <socket path> <host> <port>; prints "listening" once ready; exits when stdin closes.
'use strict';

const net = require('node:net');

const [socketPath, host, port] = process.argv.slice(2);
if (!socketPath || !host || !port) {
  process.stderr.write('usage: unix-relay.cjs <socket path> <host> <port>\n');
  process.exit(2);
}

const server = net.createServer((client) => {
  const upstream = net.connect(Number(port), host);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
  client.pipe(upstream).pipe(client);
});
server.listen(socketPath, () => process.stdout.write('listening\n'));

const stop = () => process.exit(0);
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
