// The console's shell: sign-in with a key, the page chosen by the URL's hash, admin-only parts shown to
// admin keys only (the server checks again on every call).
import { ApiError, call, session } from "./api.js";
import { describeError } from "./words.js";
import { costsPage } from "./costs.js";
import { documentPage, documentsPage } from "./documents.js";
import { routerPage } from "./router.js";
import { searchPage } from "./search.js";
import { uploadPage } from "./upload.js";

const $ = (id) => document.getElementById(id);

const PAGES = {
  upload: uploadPage,
  documents: documentsPage,
  document: documentPage,
  search: searchPage,
  costs: costsPage,
  router: routerPage,
};

/** Checks the key: an admin key may read /v1/status, any other valid key gets 403 there. */
async function whoAmI() {
  try {
    await call("GET", "/v1/status");
    return { admin: true };
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return { admin: false };
    throw err;
  }
}

function showSignedIn(signedIn) {
  $("sign-in").hidden = signedIn;
  $("nav").hidden = !signedIn;
  $("who").hidden = !signedIn;
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !(signedIn && session.admin);
  $("who-label").textContent = signedIn ? (session.admin ? "admin key" : "user key") : "";
}

async function render() {
  const page = $("page");
  if (!session.key) {
    page.replaceChildren();
    showSignedIn(false);
    $("key").focus();
    return;
  }
  showSignedIn(true);
  const [name, arg] = (location.hash.slice(1) || "upload").split("/");
  const show = PAGES[name] && (name !== "router" || session.admin) ? PAGES[name] : uploadPage;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.getAttribute("href") === `#${name === "document" ? "documents" : name}`;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  page.replaceChildren();
  try {
    await show(page, arg ? decodeURIComponent(arg) : undefined);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut(describeError(err));
    page.replaceChildren();
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = err instanceof ApiError ? describeError(err) : String(err);
    page.append(p);
  }
}

function signOut(reason = "") {
  session.key = null;
  session.admin = false;
  $("sign-in-error").textContent = reason;
  render();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  $("sign-in-error").textContent = "";
  session.key = key;
  try {
    session.admin = (await whoAmI()).admin;
  } catch (err) {
    session.key = null;
    $("sign-in-error").textContent =
      err instanceof ApiError && err.status === 401 ? "That key is not valid (or has been revoked)." : describeError(err);
    $("key").select();
    return;
  }
  $("key").value = "";
  render();
  $("main").focus();
});

$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", render);

(async () => {
  if (session.key) {
    try {
      session.admin = (await whoAmI()).admin;
    } catch {
      session.key = null;
    }
  }
  render();
})();
