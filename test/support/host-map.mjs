// Preloaded into a child process (NODE_OPTIONS=--import=<this file>): a TCP connection to a host:port named
// in BROKER_TEST_HOST_MAP ("name:port=127.0.0.1:port,...") goes to the mapped address instead, as a hosts
// file entry and a port forward would send it. Lets a test run a shipped configuration whose database
// endpoint (e.g. orders-postgres.db.internal:5432) does not exist on this machine, without changing it: the
// process still asks for that name, and TLS still verifies the server's name from the bundle.
import net from 'node:net';

const routes = new Map(
  (process.env.BROKER_TEST_HOST_MAP ?? '')
    .split(',')
    .filter((entry) => entry.includes('='))
    .map((entry) => {
      const [from, to] = entry.split('=');
      const [host, port] = to.split(':');
      return [from.toLowerCase(), { host, port: Number(port) }];
    }),
);

const original = net.connect;
function connect(...args) {
  const [options] = args;
  if (options && typeof options === 'object' && typeof options.host === 'string') {
    const route = routes.get(`${options.host.toLowerCase()}:${options.port}`);
    if (route) args[0] = { ...options, ...route };
  }
  return original.apply(net, args);
}
net.connect = connect;
net.createConnection = connect;
