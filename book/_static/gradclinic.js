// The Gradient Clinic: small fixes on top of the theme (see README.md in this folder).
"use strict";

// Search result snippets are plain text cut from each page's HTML, so inline math reached
// them as raw TeX, e.g. "\(\sigma\)". Before Sphinx takes that text, each math element
// becomes a readable plain-text form ("σ", "√σ", "x²").
const GRADCLINIC_TEX_SYMBOLS = {
  alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε",
  eta: "η", theta: "θ", lambda: "λ", mu: "μ", pi: "π", sigma: "σ", tau: "τ", phi: "φ",
  Delta: "Δ", Sigma: "Σ", nabla: "∇", partial: "∂", infty: "∞", cdot: "·", times: "×",
  le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", to: "→",
  rightarrow: "→", in: "∈", pm: "±", ldots: "…", dots: "…", cdots: "⋯", lvert: "|",
  rvert: "|", mid: "|", left: "", right: "", quad: " ", qquad: " ",
};
const GRADCLINIC_SUPERSCRIPTS = { 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", "-": "⁻" };

function gradclinicTexToText(tex) {
  let text = tex.trim().replace(/^\\[(\[]|\\[)\]]$/g, "").replace(/^\$+|\$+$/g, "");
  for (let i = 0; i < 3; i++) {
    text = text
      .replace(/\\frac\{([^{}]*)\}\{([^{}]*)\}/g, "($1)/($2)")
      .replace(/\\sqrt\{([^{}]*)\}/g, "√($1)")
      .replace(/\\(?:mathrm|text|mathbf|operatorname|mathit)\{([^{}]*)\}/g, "$1");
  }
  return text
    .replace(/√\(([^()\s]{1,2})\)/g, "√$1")
    .replace(/\^\{?([0-4-])\}?/g, (_, d) => GRADCLINIC_SUPERSCRIPTS[d])
    .replace(/\\([A-Za-z]+)\s?/g, (whole, name) =>
      name in GRADCLINIC_TEX_SYMBOLS ? GRADCLINIC_TEX_SYMBOLS[name] : name)
    .replace(/\\[,;!: ]/g, " ")
    .replace(/[{}]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
  const sphinxHtmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const page = new DOMParser().parseFromString(htmlString, "text/html");
    page.querySelectorAll(".math").forEach((el) => {
      el.textContent = gradclinicTexToText(el.textContent);
    });
    return sphinxHtmlToText(page.documentElement.outerHTML, anchor);
  };
});

// The download menu offers this page's .ipynb and a print of this page; the whole book as
// one PDF (`make pdf`, copied beside the HTML) joins them. The link is relative to the site's
// root, which Sphinx records on <html data-content_root>.
document.addEventListener("DOMContentLoaded", () => {
  const menu = document.querySelector(".dropdown-download-buttons .dropdown-menu");
  if (!menu) return;
  const root = document.documentElement.dataset.content_root || "";
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = `${root}gradient-clinic.pdf`;
  link.className = "btn btn-sm dropdown-item";
  link.title = "The whole book as one PDF";
  link.textContent = "book .pdf";
  item.appendChild(link);
  menu.appendChild(item);
});

// A table wider than the page scrolls inside its box; keyboard users reach that box with Tab
// (axe-core's scrollable-region-focusable). Whether it scrolls depends on the window's width,
// so every table that can scroll is focusable.
document.addEventListener("DOMContentLoaded", () => {
  document
    .querySelectorAll(".pst-scrollable-table-container, .pst-scrollable-table-container > table, table.indextable")
    .forEach((box) => {
      if (!box.hasAttribute("tabindex")) box.setAttribute("tabindex", "0");
    });
});
