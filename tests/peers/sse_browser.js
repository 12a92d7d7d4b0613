// A real browser (Debian's chromium, headless, driven by playwright-core) opens an EventSource
// on the BFF's notification stream with a stream ticket and prints what it receives.
//
//   node tests/peers/sse_browser.js <bff-url> <ticket> [timeout-ms]
//
// stdout, one JSON object per line: {"open": true} once the stream is open (the test then
// triggers a notification), then {"event": {type, lastEventId, data}} for the first
// notification; exit 0. Exit 1 on an error or when nothing arrives in time.
// `require('playwright-core')` resolves through NODE_PATH (scripts/peers.sh exports it).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const [base, ticket, timeoutArg] = process.argv.slice(2);
  if (!base || !ticket) {
    throw new Error('usage: sse_browser.js <bff-url> <ticket> [timeout-ms]');
  }
  const timeout = Number(timeoutArg || 60000);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ordermesh-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout,
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    // Same origin as the API: the page is the BFF's own /healthz.
    await page.goto(`${base}/healthz`, { timeout });
    await page.exposeFunction('reportOpen', () => console.log(JSON.stringify({ open: true })));
    const event = await page.evaluate(
      ({ ticket, timeout }) =>
        new Promise((resolve, reject) => {
          const url = `/api/v1/notifications/stream?ticket=${encodeURIComponent(ticket)}`;
          const source = new EventSource(url);
          const timer = setTimeout(() => {
            source.close();
            reject(new Error('no notification in time'));
          }, timeout);
          source.onopen = () => window.reportOpen();
          source.onerror = () => {
            // A ticket is single-use: the browser's automatic reconnect cannot succeed.
            if (source.readyState === EventSource.CLOSED) {
              clearTimeout(timer);
              reject(new Error('the stream was refused or closed'));
            }
          };
          const types = ['order_status', 'payment', 'message', 'account', 'system', 'unspecified'];
          for (const type of types) {
            source.addEventListener(type, (e) => {
              clearTimeout(timer);
              source.close();
              resolve({ type: e.type, lastEventId: e.lastEventId, data: JSON.parse(e.data) });
            });
          }
        }),
      { ticket, timeout },
    );
    console.log(JSON.stringify({ event, userAgent: await page.evaluate(() => navigator.userAgent) }));
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(String(error && error.stack ? error.stack : error));
    process.exit(1);
  },
);
