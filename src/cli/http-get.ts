// One GET on a connection of its own, closed once answered. fetch keeps its
// connection in a keep-alive pool, and the pool kept `switchyard status`
// running for 0.1-0.3 s after it had printed its answer.
import http from 'node:http';

export interface Answer {
  status: number;
  text: string;
}

export async function getText(url: URL, timeoutMs: number): Promise<Answer> {
  // https only when asked for: loading TLS costs every other call its start-up time.
  const get = url.protocol === 'https:' ? (await import('node:https')).get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => {
      req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' }));
    });
    req.on('error', reject);
  });
}
