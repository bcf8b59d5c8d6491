// The proxy container's health check: exit 0 when the proxy's /readyz answers 200 (a valid bundle is
// loaded), 1 otherwise, printing /readyz's answer or the error. Plain Node.js and nothing else: ECS runs it
// every 10 seconds, so it must not load the proxy bundle (the whole CLI and AWS SDK) to ask one question.
//   BROKER_DIAG_ADDR  where the proxy serves /readyz (default 127.0.0.1:9090), as the proxy reads it
import http from 'node:http';

const address = process.env.BROKER_DIAG_ADDR || '127.0.0.1:9090';
const fail = (message) => {
  process.stderr.write(`healthcheck: http://${address}/readyz: ${message}\n`);
  process.exitCode = 1;
};

const request = http.get(`http://${address}/readyz`, { timeout: 3000 }, (response) => {
  let body = '';
  response.setEncoding('utf8');
  response.on('data', (chunk) => {
    body += chunk;
  });
  response.on('end', () => {
    if (response.statusCode === 200) process.stdout.write(`${body.trim()}\n`);
    else fail(`${response.statusCode} ${body.trim()}`);
  });
});
request.on('timeout', () => request.destroy(new Error('no answer within 3s')));
request.on('error', (err) => fail(err.message));
