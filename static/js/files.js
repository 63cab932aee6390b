// Turning a file picker or a drop (files and whole folders) into a flat list of image files.

const JUNK = new Set(["thumbs.db", "desktop.ini"]);

/** Hidden files and the OS's folder litter are skipped silently; anything else goes to the server. */
export const worthSending = (file) => !file.name.startsWith(".") && !JUNK.has(file.name.toLowerCase());

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry, out) {
  if (entry.isFile) {
    out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
      for (const child of batch) await walk(child, out);
    }
  }
}

/** Every file in a drop, folders included; must be called inside the drop handler. */
export function filesFromDrop(dataTransfer) {
  const items = Array.from(dataTransfer.items || []).filter((item) => item.kind === "file");
  const entries = items.map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  const plain = Array.from(dataTransfer.files || []);
  if (!entries.length) return Promise.resolve(plain.filter(worthSending));
  return (async () => {
    const out = [];
    for (const entry of entries) await walk(entry, out);
    return out.filter(worthSending);
  })();
}

/** Split files into upload requests of at most `maxFiles` files and `maxBytes` bytes. */
export function chunk(files, maxFiles = 24, maxBytes = 24 * 1024 * 1024) {
  const chunks = [];
  let current = [];
  let bytes = 0;
  for (const file of files) {
    if (current.length && (current.length >= maxFiles || bytes + file.size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length) chunks.push(current);
  return chunks;
}
