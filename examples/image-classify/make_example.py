"""Make the image-classification example's test images and expected answers.

Run through `make.sh`, which creates the virtual environment this needs.
Writes, next to this file:

  upright.png   a line of dark text on a light background
  flipped.png   the same image turned 180 degrees
  upright.jpg   upright.png as a JPEG (quality 90)
  expected.json per image: the sha256 of the [1, 3, 48, 192] f32 tensor the
                `image-preprocess` stage must produce (little-endian bytes),
                and the top-k answer onnxruntime gives on that tensor with
                the text-direction model (examples/models/text-direction.onnx)

The preprocessing is written out in numpy exactly as the stage does it in
Rust (functions/image-preprocess/src/lib.rs): bilinear resize with
half-pixel centres in float32, (v / 255 - 0.5) / 0.5, BGR planes, zero
padding on the right. PNG decodes to the same pixels everywhere, so the
tensor must match bit for bit; JPEG decoders round their IDCT differently,
so the JPEG's pixels (and the tensor) may differ slightly and its entry is
marked "exact": false.
"""

import hashlib
import io
import json
import pathlib

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

HERE = pathlib.Path(__file__).resolve().parent
MODEL = HERE.parent / "models" / "text-direction.onnx"
HEIGHT, WIDTH = 48, 192
LABELS = ["0", "180"]
F = np.float32


def render() -> Image.Image:
    image = Image.new("RGB", (360, 72), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((14, 12), "Sluice 2026", fill=(24, 24, 40), font=font)
    return image


def axis(n: int, scale: np.float32, length: int):
    d = np.arange(n, dtype=F)
    s = np.maximum((d + F(0.5)) * scale - F(0.5), F(0))
    i0 = np.minimum(np.floor(s).astype(np.int64), length - 1)
    i1 = np.minimum(i0 + 1, length - 1)
    return i0, i1, s - i0.astype(F)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    h, w, _ = rgb.shape
    ratio = F(w) / F(h)
    resized_w = int(min(max(np.ceil(F(HEIGHT) * ratio), 1), WIDTH))
    x0, x1, fx = axis(resized_w, F(w) / F(resized_w), w)
    y0, y1, fy = axis(HEIGHT, F(h) / F(HEIGHT), h)
    p = rgb.astype(F)
    fx, fy = fx[None, :, None], fy[:, None, None]
    top = p[y0][:, x0] * (F(1) - fx) + p[y0][:, x1] * fx
    bottom = p[y1][:, x0] * (F(1) - fx) + p[y1][:, x1] * fx
    v = top * (F(1) - fy) + bottom * fy
    normalised = (v / F(255) - F(0.5)) / F(0.5)
    tensor = np.zeros((1, 3, HEIGHT, WIDTH), dtype=F)
    for plane, channel in enumerate((2, 1, 0)):  # BGR
        tensor[0, plane, :, :resized_w] = normalised[:, :, channel]
    return tensor


def main():
    upright = render()
    images = {
        "upright.png": upright,
        "flipped.png": upright.rotate(180),
    }
    for name, image in images.items():
        image.save(HERE / name, optimize=True)
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", quality=90)
    (HERE / "upright.jpg").write_bytes(buffer.getvalue())

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = {}
    for name in ["upright.png", "flipped.png", "upright.jpg"]:
        rgb = np.asarray(Image.open(HERE / name).convert("RGB"))
        tensor = preprocess(rgb)
        (probabilities,) = session.run(None, {"x": tensor})
        order = sorted(range(len(LABELS)), key=lambda i: -probabilities[0][i])
        expected[name] = {
            "exact": name.endswith(".png"),
            "tensor_sha256": hashlib.sha256(tensor.astype("<f4").tobytes()).hexdigest(),
            "labels": [LABELS[i] for i in order],
            "scores": [float(probabilities[0][i]) for i in order],
        }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main()
