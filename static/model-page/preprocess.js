// Pixels to the network's input exactly as app/engine/preprocess.py computes it (the zip's
// preprocess.py), so the browser and Python give the same answers: the image decoded upright
// (EXIF applied) without colour management, transparency flattened onto white as Pillow's
// alpha_composite does, the shorter side resized with Pillow's antialiased bilinear filter (its
// fixed-point arithmetic, bit for bit), the centre crop, then scaling and mean/std in float32.

const PRECISION_BITS = 22; // Pillow's Resample.c: 32 - 8 - 2 bits
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const rounded = Math.round(x);
  return Math.abs(x % 1) === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

function triangle(x) {
  const distance = Math.abs(x);
  return distance < 1 ? 1 - distance : 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter, over the whole axis. */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const raw = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < count; x++) {
      raw[x] = triangle((x + xmin - center + 0.5) / filterscale);
      total += raw[x];
    }
    for (let x = 0; x < count; x++) {
      const k = total !== 0 ? raw[x] / total : raw[x];
      weights[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = count;
  }
  return { ksize, bounds, weights };
}

function clip8(sum) {
  const value = sum >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** Where preprocess.resize_and_crop puts the image: its resized size and the crop's corner. */
export function cropGeometry(width, height, resizeSize, cropSize) {
  const scale = resizeSize / Math.min(width, height);
  const newWidth = Math.max(cropSize, roundHalfEven(width * scale));
  const newHeight = Math.max(cropSize, roundHalfEven(height * scale));
  return {
    newWidth,
    newHeight,
    left: Math.floor((newWidth - cropSize) / 2),
    top: Math.floor((newHeight - cropSize) / 2),
  };
}

/**
 * RGB (in an RGBA buffer, alpha ignored) resized and centre-cropped as Pillow's
 * resize(BILINEAR).crop(...) does: a horizontal pass rounded to 8 bits, then a vertical one.
 * Only the crop's columns and the rows they need are computed; the numbers are the same.
 */
export function resizeAndCrop(rgba, width, height, resizeSize, cropSize) {
  const { newWidth, newHeight, left, top } = cropGeometry(width, height, resizeSize, cropSize);
  const horizontal = coefficients(width, newWidth);
  const vertical = coefficients(height, newHeight);
  const needHorizontal = newWidth !== width;
  const needVertical = newHeight !== height;
  const firstRow = needVertical ? vertical.bounds[2 * top] : top;
  const lastRow = needVertical
    ? vertical.bounds[2 * (top + cropSize - 1)] + vertical.bounds[2 * (top + cropSize - 1) + 1]
    : top + cropSize;
  const rows = lastRow - firstRow;
  const temp = new Uint8ClampedArray(rows * cropSize * 3);
  for (let y = 0; y < rows; y++) {
    const rowStart = (y + firstRow) * width * 4;
    for (let x = 0; x < cropSize; x++) {
      const out = (y * cropSize + x) * 3;
      if (!needHorizontal) {
        const at = rowStart + (x + left) * 4;
        temp[out] = rgba[at];
        temp[out + 1] = rgba[at + 1];
        temp[out + 2] = rgba[at + 2];
        continue;
      }
      const xx = x + left;
      const xmin = horizontal.bounds[2 * xx];
      const count = horizontal.bounds[2 * xx + 1];
      const k = xx * horizontal.ksize;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let i = 0; i < count; i++) {
        const at = rowStart + (xmin + i) * 4;
        const weight = horizontal.weights[k + i];
        r += rgba[at] * weight;
        g += rgba[at + 1] * weight;
        b += rgba[at + 2] * weight;
      }
      temp[out] = clip8(r);
      temp[out + 1] = clip8(g);
      temp[out + 2] = clip8(b);
    }
  }
  const crop = new Uint8ClampedArray(cropSize * cropSize * 3);
  for (let y = 0; y < cropSize; y++) {
    const yy = y + top;
    for (let x = 0; x < cropSize; x++) {
      const out = (y * cropSize + x) * 3;
      if (!needVertical) {
        const at = ((yy - firstRow) * cropSize + x) * 3;
        crop[out] = temp[at];
        crop[out + 1] = temp[at + 1];
        crop[out + 2] = temp[at + 2];
        continue;
      }
      const ymin = vertical.bounds[2 * yy] - firstRow;
      const count = vertical.bounds[2 * yy + 1];
      const k = yy * vertical.ksize;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let i = 0; i < count; i++) {
        const at = ((ymin + i) * cropSize + x) * 3;
        const weight = vertical.weights[k + i];
        r += temp[at] * weight;
        g += temp[at + 1] * weight;
        b += temp[at + 2] * weight;
      }
      crop[out] = clip8(r);
      crop[out + 1] = clip8(g);
      crop[out + 2] = clip8(b);
    }
  }
  return crop;
}

/** preprocess.normalise: float32 CHW, x * (1 / (255 std)) - mean / std, each step rounded to float32. */
export function normalise(crop, cropSize, mean, std) {
  const plane = cropSize * cropSize;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const std32 = Math.fround(std[c]);
    const scale = Math.fround(1 / Math.fround(255 * std32));
    const shift = Math.fround(Math.fround(mean[c]) / std32);
    for (let i = 0; i < plane; i++) {
      data[c * plane + i] = Math.fround(Math.fround(crop[i * 3 + c] * scale) - shift);
    }
  }
  return data;
}

/** Pillow's alpha_composite of a pixel onto opaque white (AlphaComposite.c, 7 fractional bits). */
function ontoWhite(value, alpha) {
  const coef1 = Math.floor((alpha * 255 * 255 * 128) / (alpha * 255 + 255 * (255 - alpha)));
  const coef2 = 255 * 128 - coef1;
  const sum = value * coef1 + 255 * coef2 + (0x80 << 7);
  return Math.floor((Math.floor(sum / 256) + sum) / 256) >> 7;
}

/** RGBA as decoded to the RGB preprocess.to_rgb makes: opaque pixels kept, the rest onto white. */
export function flattenAlpha(rgba) {
  for (let i = 0; i < rgba.length; i += 4) {
    const alpha = rgba[i + 3];
    if (alpha === 255) continue;
    for (let c = 0; c < 3; c++) rgba[i + c] = alpha === 0 ? 255 : ontoWhite(rgba[i + c], alpha);
    rgba[i + 3] = 255;
  }
  return rgba;
}

/** Decoded RGBA pixels to the network's input, given metadata.json's preprocessing. */
export function pixelsToInput(rgba, width, height, metadata) {
  const crop = resizeAndCrop(flattenAlpha(rgba), width, height, metadata.resize_size, metadata.image_size);
  return normalise(crop, metadata.image_size, metadata.mean, metadata.std);
}

/** A file's pixels as Pillow decodes them: upright, no colour-profile conversion, alpha kept apart. */
export async function decodeFile(file) {
  const bitmap = await createImageBitmap(file, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    return bitmapPixels(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

/** The pixels of anything a canvas can draw (an ImageBitmap, a video frame) at its own size. */
export function bitmapPixels(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, width, height);
  return { rgba: context.getImageData(0, 0, width, height).data, width, height };
}
