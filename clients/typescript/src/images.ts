/**
 * Images in whatever form a caller has them: an http(s) URL, a base64 string (a data URL is
 * fine), bytes (`Uint8Array`, `ArrayBuffer`, Node's `Buffer`) or a `Blob`/`File`.
 *
 * FitInView takes URLs as they are (the gateway fetches them) and everything else as base64;
 * FtmvAI takes base64 only, so for it the client downloads a URL first.
 */

export type ImageInput = string | Uint8Array | ArrayBuffer | Blob;

export type EncodedImage = { url: string } | { base64: string };

export function isUrl(value: string): boolean {
  return /^https?:\/\//i.test(value.trim());
}

/** Bytes to base64 without Node's Buffer, so the same code runs in browsers. */
export function toBase64(bytes: Uint8Array): string {
  const buffer = (globalThis as { Buffer?: { from(b: Uint8Array): { toString(enc: string): string } } }).Buffer;
  if (buffer) return buffer.from(bytes).toString("base64");
  let binary = "";
  const chunk = 0x8000;
  for (let index = 0; index < bytes.length; index += chunk) {
    binary += String.fromCharCode(...bytes.subarray(index, index + chunk));
  }
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

/** An image as a URL (left for the gateway to fetch) or as base64. */
export async function encodeImage(image: ImageInput): Promise<EncodedImage> {
  if (typeof image === "string") {
    const text = image.trim();
    if (text === "") throw new TypeError("an image string is empty");
    if (isUrl(text)) return { url: text };
    const dataUrl = /^data:[^,]*;base64,/i.exec(text);
    return { base64: dataUrl ? text.slice(dataUrl[0].length) : text };
  }
  if (image instanceof Uint8Array) return { base64: toBase64(image) };
  if (image instanceof ArrayBuffer) return { base64: toBase64(new Uint8Array(image)) };
  if (typeof Blob !== "undefined" && image instanceof Blob) {
    return { base64: toBase64(new Uint8Array(await image.arrayBuffer())) };
  }
  throw new TypeError("an image must be a URL, a base64 string, bytes or a Blob");
}

/** `node:fs/promises`, imported only when saving, so browsers never load it. */
export async function nodeFs(): Promise<{ writeFile(path: string, data: Uint8Array): Promise<void> }> {
  const specifier = "node:fs/promises";
  try {
    return (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as {
      writeFile(path: string, data: Uint8Array): Promise<void>;
    };
  } catch (cause) {
    throw new TypeError("saving to a path needs Node.js; use download() for the bytes", { cause });
  }
}
