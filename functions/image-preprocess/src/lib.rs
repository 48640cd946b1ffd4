//! `image-preprocess`: a PNG or JPEG image to the `[1, 3, H, W]` f32 tensor
//! a vision model takes, decoded, resized and normalised inside the sandbox.
//!
//! The image comes as the request body, or as a `u8` tensor named `image`
//! holding the file's bytes (what an Open Inference Protocol client sends as
//! a `UINT8` input). It is resized to `height` rows keeping its aspect ratio
//! (at most `width` columns), normalised per channel to `(v / 255 - mean) /
//! std` and padded with zeros on the right to `width`: the PP-OCR
//! classifier's preprocessing.
//!
//! Config:
//! - `height`, `width`: the tensor's size (default 48 × 192).
//! - `mean`, `std`: one value, or three (per channel); default 0.5 and 0.5.
//! - `channels`: `bgr` (default, as OpenCV-trained models expect) or `rgb`.
//! - `output`: the tensor's name (default `x`).
//!
//! The resize is bilinear with half-pixel centres in f32, written out here
//! (not left to a library) so that `examples/image-classify/make_example.py`
//! can reproduce the exact tensor in numpy.

use sluice_sdk::{Message, Stage, StageError, Tensor, config, export_stage};

struct ImagePreprocess;

impl Stage for ImagePreprocess {
    fn run(mut input: Message) -> Result<Message, StageError> {
        let settings = Settings::from_config()?;
        let bytes = match input.tensors.iter().position(|(n, _)| n == "image") {
            Some(i) => input.tensors.remove(i).1.into_vec::<u8>()?,
            None => input.body_bytes()?.to_vec(),
        };
        let tensor = preprocess(&bytes, &settings)?;
        let mut output = Message::new().with_tensor(settings.output.clone(), tensor);
        output.fields = input.fields;
        Ok(output)
    }
}

export_stage!(ImagePreprocess);

/// What the model expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Rows of the tensor.
    pub height: u32,
    /// Columns of the tensor (the image is padded to it).
    pub width: u32,
    /// Per channel, in the tensor's channel order.
    pub mean: [f32; 3],
    /// Per channel, in the tensor's channel order.
    pub std: [f32; 3],
    /// Blue first (OpenCV's order) instead of red.
    pub bgr: bool,
    /// The tensor's name.
    pub output: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            height: 48,
            width: 192,
            mean: [0.5; 3],
            std: [0.5; 3],
            bgr: true,
            output: "x".into(),
        }
    }
}

impl Settings {
    fn from_config() -> Result<Self, StageError> {
        let mut settings = Self::default();
        if config::get("height").is_some() {
            settings.height = config::parse("height")?;
        }
        if config::get("width").is_some() {
            settings.width = config::parse("width")?;
        }
        for (key, slot) in [("mean", &mut settings.mean), ("std", &mut settings.std)] {
            if config::get(key).is_none() {
                continue;
            }
            *slot = match config::parse_list::<f32>(key)?.as_slice() {
                [v] => [*v; 3],
                [a, b, c] => [*a, *b, *c],
                other => {
                    return Err(StageError::internal(format!(
                        "config `{key}` has {} values; give one, or three (one per channel)",
                        other.len()
                    )));
                }
            };
        }
        if settings.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(StageError::internal(
                "config `std`: every value must be a positive number",
            ));
        }
        settings.bgr = match config::get("channels").as_deref().unwrap_or("bgr") {
            "bgr" => true,
            "rgb" => false,
            other => {
                return Err(StageError::internal(format!(
                    "config `channels` = {other:?}: use bgr or rgb"
                )));
            }
        };
        if !(1..=4096).contains(&settings.height) || !(1..=4096).contains(&settings.width) {
            return Err(StageError::internal(
                "config `height` and `width` must be between 1 and 4096",
            ));
        }
        if let Some(name) = config::get("output") {
            settings.output = name;
        }
        Ok(settings)
    }
}

/// Images larger than this many pixels are refused before decoding them
/// whole (a small file can claim a huge size).
const MAX_PIXELS: u64 = 40_000_000;

/// Decode `bytes` and make the model's tensor.
pub fn preprocess(bytes: &[u8], settings: &Settings) -> Result<Tensor, StageError> {
    let format = image::guess_format(bytes).map_err(|_| {
        StageError::invalid_input("the body is not a PNG or JPEG image; send the file's bytes")
    })?;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| StageError::invalid_input(format!("the image does not decode: {e}")))?;
    let rgb = decoded.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(StageError::invalid_input("the image is empty"));
    }
    Tensor::new(
        [1, 3, u64::from(settings.height), u64::from(settings.width)],
        normalised(rgb.as_raw(), w, h, settings),
    )
}

/// The resized width: the aspect ratio kept, at most `settings.width`.
pub fn resized_width(w: u32, h: u32, settings: &Settings) -> u32 {
    let ratio = w as f32 / h as f32;
    let width = (settings.height as f32 * ratio).ceil() as u32;
    width.clamp(1, settings.width)
}

/// Resize `rgb` (`w` × `h`, 3 bytes a pixel) bilinearly to `height` rows
/// and its aspect ratio, normalise, lay out as channel planes, pad.
pub fn normalised(rgb: &[u8], w: u32, h: u32, settings: &Settings) -> Vec<f32> {
    let (out_h, out_w) = (settings.height as usize, settings.width as usize);
    let resized_w = resized_width(w, h, settings) as usize;
    let scale_x = w as f32 / resized_w as f32;
    let scale_y = h as f32 / out_h as f32;
    // Source index pairs and weights along each axis, computed once.
    let axis = |n: usize, scale: f32, len: u32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|d| {
                let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(len as usize - 1);
                let i1 = (i0 + 1).min(len as usize - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xs = axis(resized_w, scale_x, w);
    let ys = axis(out_h, scale_y, h);
    let mut planes = vec![0f32; 3 * out_h * out_w];
    let pixel = |x: usize, y: usize, c: usize| f32::from(rgb[(y * w as usize + x) * 3 + c]);
    for (plane, c) in (0..3).map(|p| (p, if settings.bgr { 2 - p } else { p })) {
        let (mean, std) = (settings.mean[plane], settings.std[plane]);
        for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
            for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
                let top = pixel(x0, y0, c) * (1.0 - fx) + pixel(x1, y0, c) * fx;
                let bottom = pixel(x0, y1, c) * (1.0 - fx) + pixel(x1, y1, c) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                planes[(plane * out_h + dy) * out_w + dx] = (v / 255.0 - mean) / std;
            }
        }
    }
    planes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_image_fills_the_width_and_a_narrow_one_is_padded() {
        let settings = Settings::default();
        assert_eq!(resized_width(400, 100, &settings), 192);
        assert_eq!(resized_width(100, 100, &settings), 48);
        assert_eq!(resized_width(1, 1000, &settings), 1);
        // A 2×2 white image: 48 columns of 1.0, then zero padding.
        let rgb = vec![255u8; 2 * 2 * 3];
        let planes = normalised(&rgb, 2, 2, &settings);
        assert_eq!(planes.len(), 3 * 48 * 192);
        assert_eq!(planes[0], 1.0);
        assert_eq!(planes[47], 1.0);
        assert_eq!(planes[48], 0.0);
    }

    #[test]
    fn channels_are_blue_first_unless_configured() {
        // One red pixel: in BGR order the red plane is the last.
        let rgb = [255u8, 0, 0];
        let settings = Settings {
            height: 1,
            width: 1,
            ..Settings::default()
        };
        assert_eq!(normalised(&rgb, 1, 1, &settings), [-1.0, -1.0, 1.0]);
        let rgb_order = Settings {
            bgr: false,
            ..settings
        };
        assert_eq!(normalised(&rgb, 1, 1, &rgb_order), [1.0, -1.0, -1.0]);
    }

    #[test]
    fn what_is_not_an_image_is_refused() {
        let error = preprocess(b"hello", &Settings::default()).unwrap_err();
        assert!(error.message().contains("not a PNG or JPEG"), "{error:?}");
    }
}
