// The admin pages in headless Chromium, as the people who use them would:
// sign in, Force Sync Now and see the new attempt in history, switch a
// write-back type and find it kept after a reload, filter history to
// failures and resync one, and the refusals (another practice's settings,
// a form without its CSRF token). Run by tests/admin_pages.rs, which starts
// the server and passes what it made in the environment.
//
// Each page's screenshot is saved under SCREENSHOT_DIR.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/admin_pages.rs`);
  return value;
};
const base = env("BASE_URL");
const adminToken = env("ADMIN_TOKEN");
const userToken = env("USER_TOKEN");
const practice = env("PRACTICE");
const other = env("OTHER");
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });

const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
};

async function signIn(browser, token) {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto("/login");
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState("load");
  return { context, page };
}

async function historyRows(page) {
  await page.goto(`/history?practice=${practice}`);
  return page.locator("tr.run").count();
}

async function eventually(what, fn, ms = 60000) {
  const until = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  // Sign in as the Cloud PMS Admin team: the practices page.
  const { context, page } = await signIn(browser, adminToken);
  check(new URL(page.url()).pathname === "/practices", "an admin lands on the practices page");
  check(await page.locator(`tr[data-practice="${practice}"]`).count() === 1, "the practice is listed");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "asy_session");
  check(session && session.httpOnly && session.secure && session.sameSite === "Strict",
    "the session cookie is HttpOnly, Secure and SameSite=Strict");
  await page.screenshot({ path: join(shots, "practices.png"), fullPage: true });

  // Force Sync Now: feedback, then a new attempt in Sync History.
  const before = await historyRows(page);
  await page.goto(`/practices/${practice}/settings`);
  await page.screenshot({ path: join(shots, "settings.png"), fullPage: true });
  await page.getByRole("button", { name: "Force Sync Now" }).click();
  await page.waitForLoadState("load");
  check(await page.getByRole("status").first().isVisible(), "Force Sync Now shows feedback");
  const flash = await page.getByRole("status").first().textContent();
  check(/Sync requested|running|queued/.test(flash), `the feedback says what happened (${flash.trim()})`);
  await eventually("a new attempt in Sync History", async () => {
    const rows = await historyRows(page);
    if (rows <= before) return false;
    const newest = await page.locator("tr.run").first().textContent();
    return newest.includes("(force)") && !newest.includes("running");
  });
  check(true, "the forced sync appears in Sync History");

  // A write-back switch, kept after a reload.
  await page.goto(`/practices/${practice}/settings`);
  const box = page.getByLabel("Email logs");
  check(!(await box.isChecked()), "email logs start off");
  await box.check();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.waitForLoadState("load");
  check((await page.getByRole("status").first().textContent()).includes("Settings saved"),
    "saving says so");
  await page.reload();
  check(await page.getByLabel("Email logs").isChecked(), "email logs are on after a reload");
  check(!(await page.getByLabel("Call logs").isChecked()), "call logs stay off");

  // Sync History, filtered to failures; resync one.
  await page.goto("/history");
  await page.getByLabel("Status").selectOption("failures");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForLoadState("load");
  check(new URL(page.url()).searchParams.get("status") === "failures", "the filter is in the URL");
  const statuses = await page.locator("tr.run span.status").allTextContents();
  check(statuses.length > 0, `failures are listed (${statuses.length})`);
  check(statuses.every((s) => ["failed", "partial", "retrying", "dead_lettered"].includes(s)),
    `only failures are listed (${statuses.join(", ")})`);
  await page.screenshot({ path: join(shots, "history.png"), fullPage: true });
  await page.getByRole("button", { name: "Resync" }).first().click();
  await page.waitForLoadState("load");
  check((await page.getByRole("status").first().textContent()).includes("Resync requested"),
    "a resync says it was requested");

  // Dead letters.
  await page.goto("/dead-letters");
  check(await page.getByRole("heading", { name: "Dead letters" }).isVisible(), "the dead letters page opens");
  await page.screenshot({ path: join(shots, "dead-letters.png"), fullPage: true });

  // A form posted without its CSRF token (or with a wrong one) is refused.
  const noToken = await page.request.post(`/practices/${practice}/force`, { form: { x: "1" }, maxRedirects: 0 });
  check(noToken.status() === 403, `a form without its CSRF token is refused (${noToken.status()})`);
  const wrong = await page.request.post(`/practices/${practice}/force`, {
    form: { csrf: "0".repeat(64) }, maxRedirects: 0,
  });
  check(wrong.status() === 403, `a form with a wrong CSRF token is refused (${wrong.status()})`);
  check((await wrong.text()).includes("CSRF"), "the refusal says why");
  await context.close();

  // A practice user: its own settings, never another practice's.
  const user = await signIn(browser, userToken);
  check(new URL(user.page.url()).pathname === `/practices/${practice}/settings`,
    "a practice user lands on its own settings");
  const refused = await user.page.goto(`/practices/${other}/settings`);
  check(refused.status() === 403, `another practice's settings are refused (${refused.status()})`);
  await user.page.screenshot({ path: join(shots, "refused.png"), fullPage: true });
  const fleet = await user.page.goto("/dead-letters");
  check(fleet.status() === 403, "a practice user may not see the dead letters");
  await user.context.close();

  // A wrong token does not sign in.
  const stranger = await browser.newContext({ baseURL: base });
  const sp = await stranger.newPage();
  await sp.goto("/login");
  await sp.getByLabel("Admin token").fill("asy_0000000000000000_" + "0".repeat(64));
  await sp.getByRole("button", { name: "Sign in" }).click();
  check(await sp.getByRole("alert").isVisible(), "a wrong token is told so");
  const direct = await sp.goto("/practices");
  check(new URL(sp.url()).pathname === "/login", "without a session a page sends you to sign in");
  await stranger.close();
  console.log("all browser checks passed");
} finally {
  await browser.close();
}
