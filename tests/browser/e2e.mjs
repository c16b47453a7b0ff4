#!/usr/bin/env node
// The agent's and the requester's path through the pages, in headless
// Chromium: the ticket in the ServiceNow agent view, its first link left to
// expire (the simulator's clock is the only thing driven from outside) and
// the field with attempt 2 and a fresh link, imper.ai's send page (first to
// a mistyped address, then sent again to the corrected one), the outbox,
// the verification page, the password reset, and the ticket again, now
// passed and resolved by imperai-snowd.
//
//   node e2e.mjs [--snow URL] [--imperai URL] [--artifacts DIR]
//                [--ticket INC0010001] [--email ADDR] [--agent NAME]
//                [--timeout SECONDS]
//
// Every option can also come from the environment: SNOW_URL, IMPERAI_URL,
// ARTIFACTS_DIR, TICKET, REQUESTER_EMAIL, AGENT_NAME, STEP_TIMEOUT; and
// CHROMIUM (the browser binary, default /usr/bin/chromium), PLAYWRIGHT_CORE
// (playwright-core's directory, default: found from here as node does).  The URLs
// default to the demo's (tests/demo.sh), so while the demo runs
// `node tests/browser/e2e.mjs` walks it.  Without --ticket the first open
// Password Reset ticket whose verification was not sent yet is used.
//
// Each step is printed and leaves a screenshot NN-name.png in the artifacts
// directory; a failure leaves FAILED.png and FAILED.html, prints what was
// expected and what the page showed, and exits 1 (2: bad usage).  Waiting is
// for a condition on the page, with a deadline, never a fixed sleep.
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);

function usage(msg) {
  console.error(`e2e.mjs: ${msg}`);
  console.error('usage: node e2e.mjs [--snow URL] [--imperai URL] [--artifacts DIR] ' +
    '[--ticket NUMBER] [--email ADDR] [--agent NAME] [--timeout SECONDS]');
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      snow: { type: 'string', default: process.env.SNOW_URL || 'http://127.0.0.1:18080' },
      imperai: { type: 'string', default: process.env.IMPERAI_URL || 'http://127.0.0.1:18090' },
      artifacts: { type: 'string', default: process.env.ARTIFACTS_DIR || 'artifacts' },
      ticket: { type: 'string', default: process.env.TICKET || '' },
      email: { type: 'string', default: process.env.REQUESTER_EMAIL || 'abel.private@example.org' },
      agent: { type: 'string', default: process.env.AGENT_NAME || 'Ivy Agent' },
      timeout: { type: 'string', default: process.env.STEP_TIMEOUT || '60' },
    },
  }).values;
} catch (e) {
  usage(e.message);
}
const SNOW = opts.snow.replace(/\/+$/, '');
const IMPERAI = opts.imperai.replace(/\/+$/, '');
const ART = opts.artifacts;
const STEP_MS = Number(opts.timeout) * 1000;
if (!(STEP_MS > 0)) usage(`--timeout: not a number of seconds: ${opts.timeout}`);
for (const u of [SNOW, IMPERAI]) {
  try { new URL(u); } catch { usage(`not a URL: ${u}`); }
}

let chromium;
try {
  ({ chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core'));
} catch (e) {
  console.error(`e2e.mjs: cannot load playwright-core (${e.message.split('\n')[0]}): ` +
    'run `npm ci` in tests/browser, or set PLAYWRIGHT_CORE to its directory');
  process.exit(1);
}

class StepError extends Error {}

const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(5);
let shot = 0;
let page;            // the page the current step works on (for the failure screenshot)
let stepName = 'start';

function say(msg) { console.log(`[${secs()} s] ${msg}`); }

function fail(msg) { throw new StepError(msg); }

function expect(cond, msg) { if (!cond) fail(msg); }

async function step(name, fn) {
  stepName = name;
  say(`step: ${name}`);
  return fn();
}

async function screenshot(name) {
  shot += 1;
  const file = `${String(shot).padStart(2, '0')}-${name}.png`;
  await page.screenshot({ path: join(ART, file), fullPage: true });
  say(`  screenshot ${file}`);
}

async function text(sel, p = page) {
  const el = await p.$(sel);
  return el ? (await el.innerText()).trim() : null;
}

// GET url and check the answer's status.
async function open(url, okStatus = [200]) {
  const resp = await page.goto(url, { waitUntil: 'load', timeout: STEP_MS });
  expect(resp && okStatus.includes(resp.status()),
    `${url} answered ${resp ? resp.status() : 'nothing'}, expected ${okStatus.join(' or ')}`);
  return resp;
}

// Reloads url until check() (run in Node, on the loaded page) returns
// something true, or fails after STEP_MS naming what it waited for and what
// the page showed last.  The pages are served without JavaScript, so the
// condition is re-read after each reload; the reloads are 250 ms apart.
async function waitOnPage(url, what, check, shown) {
  const deadline = Date.now() + STEP_MS;
  let tries = 0;
  for (;;) {
    await open(url);
    tries += 1;
    const v = await check();
    if (v) {
      say(`  ${what}: seen after ${tries} load(s)`);
      return v;
    }
    if (Date.now() >= deadline) {
      fail(`waited ${STEP_MS / 1000} s (${tries} loads of ${url}) for ${what}; ` +
        `the page shows: ${await shown()}`);
    }
    await page.waitForTimeout(250);
  }
}

// Clicks an element that leads to another page and returns the page it
// opened: the same page, or a new tab when the link has a target.
async function follow(sel, urlPrefix) {
  const el = await page.$(sel);
  expect(el, `no ${sel} on ${page.url()}`);
  const target = await el.getAttribute('target');
  const href = await el.getAttribute('href');
  if (urlPrefix !== undefined) {
    expect(href && href.startsWith(urlPrefix),
      `${sel} points to ${href}, expected a link under ${urlPrefix}`);
  }
  if (target && target !== '_self') {
    const [popup] = await Promise.all([page.context().waitForEvent('page', { timeout: STEP_MS }),
      el.click()]);
    await popup.waitForLoadState('load', { timeout: STEP_MS });
    page = popup;
  } else {
    await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: STEP_MS }),
      el.click()]);
  }
  return page;
}

async function submit(button) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: STEP_MS }),
    page.click(button)]);
}

const field = () => text('#imperai-verification');
const TYPO = () => opts.email.replace('@', '.typo@');

// The simulator's control API (not a page anyone sees): POST body as JSON.
async function simControl(path, body) {
  const resp = await page.request.fetch(`${IMPERAI}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    data: body === undefined ? undefined : JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' },
  });
  expect(resp.ok(), `${path} answered ${resp.status()}: ${await resp.text()}`);
  return resp.json();
}
const fieldAndState = async () =>
  `state "${await text('#state')}", field "${(await field() || '').replace(/\s+/g, ' ')}"`;

// Finds the ticket to work on in the agent view: --ticket, or the first
// Password Reset ticket that is still open and whose verification has not
// been sent yet (the daemon may not have shown its link yet: the caller
// waits for that).
async function findTicket() {
  await open(`${SNOW}/`);
  const rows = await page.$$eval('#tickets a[href*=".do?sys_id="]',
    (as) => as.map((a) => ({ number: a.textContent.trim(), href: a.href })));
  if (opts.ticket) {
    const row = rows.find((r) => r.number === opts.ticket);
    expect(row, `ticket ${opts.ticket} is not in the agent view's list at ${SNOW}/ ` +
      `(it lists ${rows.map((r) => r.number).join(', ') || 'nothing'})`);
    return row;
  }
  for (const row of rows) {
    await open(row.href);
    if ((await text('#category')) === 'Password Reset' &&
        /^(New|In Progress|On Hold)$/.test(await text('#state')) &&
        !/Verification link sent|Verification Outcome/.test((await field()) || '')) return row;
  }
  fail(`no open Password Reset ticket waiting for its verification at ${SNOW}/ ` +
    `(tickets: ${rows.map((r) => r.number).join(', ') || 'none'}); give one with --ticket`);
}

async function main() {
  mkdirSync(ART, { recursive: true });
  for (const f of readdirSync(ART)) {
    if (/^(\d\d-.*\.png|FAILED\.(png|html))$/.test(f)) rmSync(join(ART, f));
  }
  say(`ServiceNow ${SNOW}, imper.ai ${IMPERAI}, screenshots in ${ART}`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: STEP_MS,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    context.setDefaultTimeout(STEP_MS);
    page = await context.newPage();
    try {
      await run();
    } catch (e) {
      await keepFailedPage();
      throw e;
    }
  } finally {
    await browser.close();
  }
}

async function run() {
  let ticket, ticketUrl;

  await step('the agent opens the ticket in the ServiceNow agent view', async () => {
    ticket = await findTicket();
    ticketUrl = ticket.href;
    await waitOnPage(ticketUrl, 'the field to show "imper.ai - Send Verification link"',
      async () => (await page.$('#imperai-verification a')) &&
        /imper\.ai - Send Verification link/.test(await field()),
      fieldAndState);
    expect((await text('#number')) === ticket.number,
      `the form shows ${await text('#number')}, expected ${ticket.number}`);
    say(`  ticket ${ticket.number}: ${await text('#short-description')}`);
    await screenshot('ticket');
  });

  await step('nobody sends the link before it expires: the field offers attempt 2', async () => {
    const dump = await simControl('/sim/dump');
    const mine = dump.verifications.filter((v) => v.ticket.number === ticket.number);
    expect(mine.length === 1 && mine[0].status === 'pending',
      `imper.ai holds ${JSON.stringify(mine.map((v) => v.status))} for ${ticket.number}`);
    await simControl('/sim/act', { id: mine[0].id, do: 'expire' });
    await waitOnPage(ticketUrl, 'the field to show attempt 2 with a fresh link',
      async () => /Attempt 2 of 3 - attempt 1: Timed out/.test(await field()) &&
        (await page.$('#imperai-verification a:has-text("imper.ai - Send Verification link")')),
      fieldAndState);
    const f = await field();
    expect(f.indexOf('Send Verification link') < f.indexOf('Attempt 2 of 3'),
      `the link is not the first thing in the field: "${f.replace(/\s+/g, ' ')}"`);
    expect(!/imper\.ai Verification/.test(f), 'the field repeats its own title');
    await screenshot('ticket-attempt-2');
  });

  await step('the agent clicks "imper.ai - Send Verification link"', async () => {
    const link = await page.$('#imperai-verification a:has-text("imper.ai - Send Verification link")');
    expect(link, 'the field has no "imper.ai - Send Verification link" link');
    await follow('#imperai-verification a:has-text("imper.ai - Send Verification link")',
      `${IMPERAI}/send/`);
    expect(page.url().startsWith(`${IMPERAI}/send/`),
      `the link opened ${page.url()}, expected imper.ai's send page`);
    expect((await text('#ticket-number')) === ticket.number,
      `the send page is for ${await text('#ticket-number')}, expected ${ticket.number}`);
    expect(await page.$('#recipient') && await page.$('#agent') && await page.$('#send'),
      'the send page lacks #recipient, #agent or #send');
    await screenshot('send-page');
  });

  await step(`the agent enters a mistyped address (${TYPO()}) and their name`,
    async () => {
      await page.fill('#recipient', TYPO());
      await page.fill('#agent', opts.agent);
      await screenshot('send-filled');
      await submit('#send');
      const sent = await text('#sent');
      expect(sent, `no confirmation (#sent) after Send; the page says: ` +
        `${await text('#error') || await text('body')}`);
      say(`  ${sent}`);
      await screenshot('sent');
    });

  await step('the agent goes back to the ticket, which shows that the link was sent', async () => {
    await follow('#ticket-link', ticketUrl);
    expect(page.url() === ticketUrl, `"Back to the ticket" opened ${page.url()}, ` +
      `expected ${ticketUrl}`);
    await waitOnPage(ticketUrl, `the field to say the link was sent by ${opts.agent}`,
      async () => new RegExp(`Verification link sent by ${opts.agent}`).test(await field()) &&
        (await page.$('#imperai-verification a:has-text("imper.ai - Send the link again")')),
      fieldAndState);
    await screenshot('ticket-link-sent');
  });

  let typoHref;
  await step(`the agent sees the typo and sends the link again to ${opts.email}`, async () => {
    const dump = await simControl('/sim/outbox');
    const typo = dump.messages.find((m) => m.to === TYPO() && m.ticket_number === ticket.number);
    expect(typo, `no message to ${TYPO()} in imper.ai's outbox`);
    typoHref = typo.link;
    await follow('#imperai-verification a:has-text("imper.ai - Send the link again")',
      `${IMPERAI}/send/`);
    expect(await text('#resend'), 'the send page does not say a link was sent already');
    await page.fill('#recipient', opts.email);
    await page.fill('#agent', opts.agent);
    await screenshot('send-again');
    await submit('#send');
    expect(await text('#sent'), `no confirmation (#sent) after sending again; the page says: ` +
      `${await text('#error') || await text('body')}`);
    await follow('#ticket-link', ticketUrl);
    const masked = opts.email.replace(/^(.).*(.)@(.).*(\.[^.]+)$/, '$1***$2@$3***$4');
    await waitOnPage(ticketUrl, `the field to show the latest send, to ${masked}`,
      async () => new RegExp(`Recipient: ${masked.replace(/[.*+]/g, '\\$&')}`).test(await field()),
      fieldAndState);
    await screenshot('ticket-sent-again');
    await open(typoHref, [410]);
    expect(/replaced by a newer one/.test(await text('#gone')),
      `the first link does not say it was replaced: "${await text('body')}"`);
    await screenshot('first-link-replaced');
  });

  let verifyHref;
  await step("the requester opens the message in imper.ai's outbox", async () => {
    await open(`${IMPERAI}/outbox`);
    const rows = await page.$$eval('#outbox tr.message', (trs) => trs.map((tr) => ({
      to: tr.querySelector('.to')?.textContent.trim(),
      ticket: tr.querySelector('.ticket')?.textContent.trim(),
      link: tr.querySelector('a.verify-link')?.href,
    })));
    const msg = rows.find((r) => r.to === opts.email && r.ticket === ticket.number);
    expect(msg, `no message to ${opts.email} for ${ticket.number} in the outbox ` +
      `(${rows.length} message(s): ${rows.map((r) => `${r.to} ${r.ticket}`).join(', ')})`);
    verifyHref = msg.link;
    expect(verifyHref.startsWith(`${IMPERAI}/verify/`), `the message's link is ${verifyHref}`);
    await screenshot('outbox');
  });

  await step('the requester follows the verification link and answers', async () => {
    await follow(`#outbox tr.message a.verify-link[href="${verifyHref}"]`);
    expect(page.url() === verifyHref, `the outbox link opened ${page.url()}`);
    expect((await text('#ticket-number')) === ticket.number,
      `the verification page is for ${await text('#ticket-number')}`);
    await page.fill('#q1', 'Blue');
    await page.fill('#q2', 'Springfield');
    await page.fill('#q3', 'Rex');
    await screenshot('verify-page');
    await submit('#verify');
    const result = await text('#result');
    expect(result === 'Verification passed.', `the verification page says "${result}", ` +
      'expected "Verification passed."');
    expect(await page.$('a#reset-link'), 'no "Reset your password" link after passing');
    await screenshot('verified');
  });

  await step('the requester resets the password', async () => {
    await follow('a#reset-link', `${IMPERAI}/reset/`);
    expect((await text('#ticket-number')) === ticket.number,
      `the reset page is for ${await text('#ticket-number')}`);
    await page.fill('#password', 'Spring-Rain-2041');
    await page.fill('#confirm', 'Spring-Rain-2041');
    await screenshot('reset-page');
    await submit('#reset');
    const done = await text('#done');
    expect(done, `no confirmation (#done) after the reset; the page says: ` +
      `${await text('#error') || await text('body')}`);
    say(`  ${done}`);
    await screenshot('reset-done');
  });

  await step('the agent sees the ticket passed and resolved', async () => {
    await waitOnPage(ticketUrl,
      'the field to show "Verification Outcome: Passed" and the state Resolved or Closed',
      async () => /Verification Outcome: Passed/.test(await field()) &&
        /^(Resolved|Closed)$/.test(await text('#state')),
      fieldAndState);
    const f = await field();
    for (const want of [/Risk level: Verified/, /Verification ID: \S+/, /Password reset completed/]) {
      expect(want.test(f), `the field lacks ${want}: "${f.replace(/\s+/g, ' ')}"`);
    }
    const idLink = await page.$('#imperai-verification a');
    expect(idLink && (await idLink.getAttribute('href')).startsWith(`${IMPERAI}/verifications/`),
      'the Verification ID is not a link to imper.ai\'s details page');
    const notes = await text('#work-notes');
    expect(/Passed/i.test(notes || ''), `no work note about the outcome: "${notes}"`);
    say(`  state ${await text('#state')}; ${f.split('\n').find((l) => /Outcome/.test(l))}`);
    await screenshot('ticket-resolved');
  });

  await step("the verification in imper.ai's console", async () => {
    await follow('#imperai-verification a[href*="/verifications/"]', `${IMPERAI}/verifications/`);
    const status = await text('#status');
    expect(status === 'Passed', `imper.ai's details page says status "${status}"`);
    expect((await text('#ticket-number')) === ticket.number,
      `the details page is for ${await text('#ticket-number')}`);
    await screenshot('details');
  });

  await step("the verification in imper.ai's console list", async () => {
    await follow('#brand a[href="/verifications"]');
    const rows = await page.$$eval('#verifications tbody tr', (trs) => trs.map((tr) => ({
      ticket: tr.querySelector('.ticket')?.textContent.trim(),
      status: tr.querySelector('.status')?.textContent.trim(),
      risk: tr.querySelector('.risk')?.textContent.trim(),
      by: tr.querySelector('.initiated-by')?.textContent.trim(),
    })));
    const row = rows.find((r) => r.ticket === ticket.number);
    expect(row && row.status === 'Passed' && row.risk === 'Verified' && row.by === opts.agent,
      `the console lists ${JSON.stringify(row)} for ${ticket.number}, expected Passed, ` +
      `Verified, initiated by ${opts.agent}`);
    await screenshot('console');
  });
}

// The page as it was when a step failed, for the one who reads the log.
async function keepFailedPage() {
  try {
    await page.screenshot({ path: join(ART, 'FAILED.png'), fullPage: true });
    writeFileSync(join(ART, 'FAILED.html'), await page.content());
    console.error(`e2e.mjs: the page (${page.url()}) is in ${join(ART, 'FAILED.png')} ` +
      'and FAILED.html');
  } catch (e) {
    console.error(`e2e.mjs: could not keep the failed page: ${e.message}`);
  }
}

try {
  await main();
  say(`passed: ${shot} screenshots in ${ART}`);
} catch (e) {
  const msg = e instanceof StepError ? e.message : (e && e.stack) || String(e);
  console.error(`e2e.mjs: FAILED at step "${stepName}": ${msg}`);
  process.exit(1);
}
