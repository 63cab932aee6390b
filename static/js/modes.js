// Mode names as the server defines them (MODE_INFO in app/engine/params.py), sent in the page's config.

const names = () => JSON.parse(document.querySelector("main[data-config]")?.dataset.config || "{}").modeNames || {};

export const modeName = (mode) => names()[mode] || mode;
