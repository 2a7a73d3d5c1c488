// A sample API to put behind `sluice gateway`: it knows nothing about payments.
// GET /free/hello is free, GET /paid/joke is priced by the gateway's config.
import http from 'node:http';

const port = Number(process.env.UPSTREAM_PORT ?? 3000);
const jokes = [
  'A Lightning payment walks into a bar. It is gone before the bartender looks up.',
  'Why did the millisatoshi cross the channel? It was routed.',
  'My node and I have an HTLC: a Hash-Time-Locked Commitment to lunch.',
];
let served = 0;

http
  .createServer((request, response) => {
    const send = (status, body) => {
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      response.end(JSON.stringify(body));
    };
    if (request.url === '/free/hello') return send(200, { hello: 'world' });
    if (request.url === '/paid/joke') return send(200, { joke: jokes[served++ % jokes.length] });
    send(404, { error: 'no such route' });
  })
  .listen(port, '127.0.0.1', () => console.log(`sample API on http://127.0.0.1:${port}`));
