// One Lighthouse report of a page that needs a session, for benchmarks/pages.py:
//   node benchmarks/lighthouse.mjs CHROMIUM URL SESSION_COOKIE OUTPUT.json
// The session goes into the browser's cookie jar, and Lighthouse is told to keep it: the page's own
// script fetches its panels with the browser's cookies, which Lighthouse's --extra-headers (a header on
// the document's requests) does not give them. Categories as benchmarks/pages.py reads them.
import fs from "node:fs";
import puppeteer from "puppeteer-core";
import lighthouse from "lighthouse";

const [chromium, url, session, output] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const page = await browser.newPage();
  await page.setCookie({ name: "sessionid", value: session, url: new URL(url).origin });
  const result = await lighthouse(
    url,
    {
      output: "json",
      logLevel: "error",
      onlyCategories: ["performance", "accessibility", "best-practices"],
      // Lighthouse clears the origin's storage, cookies included, before it loads the page.
      disableStorageReset: true,
    },
    undefined,
    page,
  );
  fs.writeFileSync(output, result.report);
  // The report counts only if the page is what people see: every panel arrived.
  const missing = await page.$$eval("section[data-src]", (sections) =>
    sections.filter((section) => section.dataset.loaded !== "true").map((section) => section.dataset.panel),
  );
  if (missing.length) {
    console.error(`panels that did not load: ${missing.join(", ")}`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
