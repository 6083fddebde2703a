// The ProxPanel web panel in a real browser (Debian's headless Chromium, driven by
// playwright-core; no browser download). Started by tests/it/web.rs against `proxpanel serve`.
//
// Flow: signup on the apex -> the new subdomain -> sign in -> create a plan -> add a
// subscriber -> see it in the list -> add a router -> the RouterOS script is shown; then the
// operator signs in (enrolling TOTP from the page's secret) and suspends the tenant -> the
// panel shows the suspension. A screenshot of every main page goes to PP_E2E_ARTIFACTS.
//
// Environment: PP_E2E_PORT (HTTP listener on 127.0.0.1), PP_E2E_BASE (base domain, a name under
// .localhost), PP_E2E_ARTIFACTS (directory), PP_E2E_OPERATOR_EMAIL, PP_E2E_OPERATOR_PASSWORD,
// PP_E2E_CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const port = need("PP_E2E_PORT");
const base = need("PP_E2E_BASE");
const artifacts = need("PP_E2E_ARTIFACTS");
const opEmail = need("PP_E2E_OPERATOR_EMAIL");
const opPassword = need("PP_E2E_OPERATOR_PASSWORD");
const slug = `isp${Date.now().toString(36)}`;
const apex = `http://${base}:${port}`;
const panel = `http://${slug}.${base}:${port}`;
const operator = `http://operator.${base}:${port}`;
mkdirSync(artifacts, { recursive: true });

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from a base32 secret.
function totp(secretB32, unix = Math.floor(Date.now() / 1000)) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secretB32.replace(/=+$/, "").toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`bad base32 character ${ch}`);
    bits += v.toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const h = createHmac("sha1", Buffer.from(bytes)).update(counter).digest();
  const off = h[19] & 0x0f;
  const bin = ((h[off] & 0x7f) << 24) | (h[off + 1] << 16) | (h[off + 2] << 8) | h[off + 3];
  return String(bin % 1_000_000).padStart(6, "0");
}

const step = (msg) => console.log(`-- ${msg}`);
// playwright-core gives every launch a fresh, empty user data dir of its own (it refuses a
// --user-data-dir argument), and removes it on close.
const browser = await chromium.launch({
  executablePath: process.env.PP_E2E_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await ctx.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  const expectText = async (text) => {
    const body = await page.textContent("body");
    if (!body.includes(text)) throw new Error(`expected ${JSON.stringify(text)} on ${page.url()}; page says: ${body.slice(0, 600)}`);
  };

  step(`landing page ${apex}/`);
  await page.goto(`${apex}/`);
  await expectText("Create your account");
  await shot("01-landing");
  await page.click("text=Create your account");

  step(`signup as ${slug}`);
  await page.fill("#f-slug", slug);
  // The live check (our script calling /api/v1/signup/check) says it is free.
  await page.waitForSelector(`#f-slug-msg:has-text("${slug} is available")`, { timeout: 10000 });
  await page.fill("#f-name", "Browser ISP");
  await page.fill("#f-email", `owner@${slug}.example`);
  await page.fill("#f-password", "browser-pass-1");
  await shot("02-signup");
  await page.click("main button[type=submit]");
  await expectText("Your account is ready");
  await shot("03-signup-done");

  step("to the new panel and sign in");
  await page.click("text=Go to your panel");
  await page.waitForURL(`${panel}/login`);
  await page.fill("#f-email", `owner@${slug}.example`);
  await page.fill("#f-password", "browser-pass-1");
  await page.click("main button[type=submit]");
  await page.waitForURL(`${panel}/`);
  await expectText("online sessions now");
  await shot("04-dashboard");

  step("create a plan");
  await page.click("nav.main >> text=Plans");
  await page.click("text=New plan");
  await page.fill("#f-name", "20M");
  await page.fill("#f-download_kbps", "20480");
  await page.fill("#f-upload_kbps", "4096");
  await page.fill("#f-price", "19.99");
  await page.click("main button[type=submit]");
  await page.waitForURL(`${panel}/plans?done=created`);
  await expectText("20480 / 4096 kbit/s");
  await shot("05-plans");

  step("add a subscriber");
  await page.click("nav.main >> text=Subscribers");
  await page.click("text=New subscriber");
  await page.fill("#f-username", "alice");
  await page.fill("#f-password", "alice-pw");
  await page.selectOption("#f-plan", { label: "20M" });
  await shot("06-subscriber-form");
  await page.click("main button[type=submit]");
  await expectText("Created.");
  // The daily usage chart is server-rendered SVG (no script needed).
  await page.waitForSelector("main .chart svg");
  await expectText("Traffic per day, 30 days");
  await shot("07-subscriber");
  await page.click("nav.main >> text=Subscribers");
  await page.waitForSelector("table >> text=alice");
  await expectText("20M");
  await shot("08-subscribers");
  // The same list on a phone-sized screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("08b-subscribers-phone");
  await page.setViewportSize({ width: 1200, height: 900 });

  step("add a router");
  await page.click("nav.main >> text=Routers");
  await page.click("text=Add a router");
  await page.fill("#f-name", "core-1");
  await page.click("main button[type=submit]");
  await expectText("Router core-1 added");
  const script = await page.textContent("#script");
  if (!script.includes("/interface wireguard add")) throw new Error(`no RouterOS script: ${script.slice(0, 300)}`);
  if (!(await page.isVisible("button[data-copy]"))) throw new Error("the copy button is not shown");
  await shot("09-router-script");

  step("show the router script again (confirmed, audited)");
  await page.click("nav.main >> text=Routers");
  await page.click("table >> text=core-1");
  await page.click("text=Show the router script again");
  await expectText("Show the script of core-1 again?");
  await page.click("main button[type=submit]");
  // The same script, less the private key (shown only once, never stored), and a page that says so.
  await expectText("Script of router core-1");
  if (!(await page.isVisible("#no-key"))) throw new Error("the re-shown script does not say it has no private key");
  const again = await page.textContent("#script");
  if (again.includes("private-key=") || !again.includes("# No WireGuard private key here")
      || again.replace(/^# No WireGuard private key here.*\n/m, "") !== script.replace(/ private-key="[^"]*"/, ""))
    throw new Error(`the script shown again is not the first one without its key:\n${script}\n---\n${again}`);
  await page.click("nav.main >> text=Audit");
  await page.waitForSelector("table >> text=peer.script");
  await shot("09b-audit");
  if (errors.length) throw new Error(`browser errors: ${errors.join("; ")}`);

  step("operator signs in with TOTP and suspends the tenant");
  const op = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage();
  page = op;
  await op.goto(`${operator}/login`);
  await op.fill("#f-email", opEmail);
  await op.fill("#f-password", opPassword);
  await op.click("main button[type=submit]");
  if (await op.isVisible("#totp-secret")) {
    await op.screenshot({ path: join(artifacts, "10-operator-enrol.png"), fullPage: true });
    const secret = (await op.textContent("#totp-secret")).trim();
    await op.fill("#f-totp", totp(secret));
    await op.click("main button[type=submit]");
  } else {
    throw new Error(`expected the enrolment page; got ${await op.textContent("body")}`);
  }
  await op.waitForURL(`${operator}/`);
  await op.waitForSelector(`table >> text=${slug}`);
  await op.screenshot({ path: join(artifacts, "11-operator-tenants.png"), fullPage: true });
  await op.click(`button[aria-label="Suspend ${slug}"]`);
  await op.waitForSelector("text=Tenant suspended");

  step("the tenant's panel shows the suspension");
  page = await ctx.newPage();
  await page.goto(`${panel}/`);
  await expectText("This account is suspended");
  await page.screenshot({ path: join(artifacts, "12-suspended.png"), fullPage: true });
  console.log(`ok: browser flow passed; screenshots in ${artifacts}`);
} catch (e) {
  if (page) {
    try { await page.screenshot({ path: join(artifacts, "failure.png"), fullPage: true }); } catch {}
    try { console.error(`at ${page.url()}`); } catch {}
  }
  console.error(e && e.stack ? e.stack : String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
