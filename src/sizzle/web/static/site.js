// Every page: a form submits once. A second click while the first is on its way does
// nothing (no second launch, no second "Stop this GPU?"); forms marked data-confirm ask
// before they do something that cannot be undone.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  if (form.dataset.submitting) {
    event.preventDefault();
    return;
  }
  if (event.defaultPrevented) return;  // a page script (or htmx) sends this one itself
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  form.dataset.submitting = "true";
  form.setAttribute("aria-busy", "true");
  // Disabled after this turn: a button disabled now would leave its name out of the form data.
  setTimeout(() => {
    for (const button of submitButtons(form)) button.disabled = true;
  }, 0);
  // A GET form that answers with a download leaves the page where it is: ready again soon.
  if (form.method === "get") setTimeout(() => release(form), 5000);
});

function submitButtons(form) {
  // form.elements: also the buttons outside it that name it with form="…"
  return [...form.elements].filter((el) => el instanceof HTMLButtonElement && el.type === "submit");
}

function release(form) {
  delete form.dataset.submitting;
  form.removeAttribute("aria-busy");
  for (const button of submitButtons(form)) button.disabled = false;
}

// Back to a page the browser kept (the back button): its forms can be sent again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const form of document.querySelectorAll("form[data-submitting]")) release(form);
});

// htmx requests: the element that sent one waits for its answer before it sends again.
document.addEventListener("htmx:beforeRequest", (event) => {
  const source = event.detail && event.detail.elt;
  if (source instanceof HTMLButtonElement) source.disabled = true;
});
document.addEventListener("htmx:afterRequest", (event) => {
  const source = event.detail && event.detail.elt;
  if (source instanceof HTMLButtonElement) source.disabled = false;
});

// Buttons marked data-copy="<input id>" copy that input's value, and say so.
document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Press Ctrl+C";  // the text is selected; the clipboard API was refused
  }
});

// A wizard's bar says what is chosen: data-chosen-for="<radio name>" shows the chosen card's
// heading, kept as the choice changes.
for (const summary of document.querySelectorAll("[data-chosen-for]")) {
  const form = summary.closest("form");
  const name = summary.dataset.chosenFor;
  const show = () => {
    const chosen = form && form.querySelector(`input[name="${name}"]:checked`);
    const heading = chosen && chosen.closest("label") && chosen.closest("label").querySelector("h3");
    summary.textContent = heading ? `Chosen: ${heading.textContent.trim()}` : "";
  };
  if (form) form.addEventListener("change", show);
  show();
}

// Times: the server writes them in UTC (<time datetime data-local>); shown here in the reader's
// own time zone, with its name, and the UTC time kept as the tooltip.
const localTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", timeZoneName: "short",
});
function showLocalTimes(root) {
  for (const element of root.querySelectorAll("time[data-local]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    element.title = element.title || element.textContent;
    element.textContent = localTime.format(moment);
  }
}
showLocalTimes(document);
