/**
 * The least a proxy container must do before it can report ready, written directly: read the bundle secret
 * with the AWS SDK (the same client the proxy loads for --secret-id), parse it, build a TLS context from its
 * certificate, key and CA, listen on the proxy port and answer /readyz. bench/proxy-start bundles it the way
 * scripts/build.mjs bundles the proxy and starts it side by side with the proxy container: its start-up is
 * the floor the container's is compared with.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

const env = process.env;
const client = new SecretsManagerClient({});
const out = await client.send(
  new GetSecretValueCommand({ SecretId: env.BROKER_BUNDLE_SECRET_ID, VersionStage: 'AWSCURRENT' }),
);
const bundle = JSON.parse(out.SecretString ?? '{}') as { files: Record<string, string> };
const context = tls.createSecureContext({
  cert: bundle.files.tlscert,
  key: bundle.files.key,
  ca: bundle.files['teleport-host-ca.crt'],
});
const proxy = net.createServer((socket) => socket.destroy());
await new Promise<void>((resolve) => proxy.listen(Number(env.BROKER_PROXY_PORT), '127.0.0.1', resolve));
const [host, port] = (env.BROKER_DIAG_ADDR ?? '127.0.0.1:9090').split(':');
const diag = http.createServer((req, res) => {
  res.writeHead(req.url === '/readyz' && context ? 200 : 404).end('{"ready":true}');
});
diag.listen(Number(port), host);
process.stdout.write(`listening on 127.0.0.1:${env.BROKER_PROXY_PORT}\n`);
process.once('SIGTERM', () => process.exit(0));
