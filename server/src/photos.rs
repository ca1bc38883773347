//! Photos: check on arrival that an uploaded image is whole (its file structure reaches its
//! end, with intact checksums where the format has them) and within limits (a small file that
//! claims a gigantic picture is refused before anything decodes it), and make the smaller copies
//! reviewers look at, upright (EXIF orientation applied) and without metadata (no GPS, no camera
//! serial).
//!
//! The check on arrival reads headers and structure only: decoding every pixel of every photo
//! cost more than everything else a submission needs, and a photo whose structure is whole but
//! whose compressed data is damaged cannot be repaired by sending it again anyway. Its copies
//! then fail with the reason, and the original is kept as sent.
//!
//! Only JPEG, PNG and WebP are treated as images, recognised by their first bytes, never by the
//! name or the type the client claims. Anything else is an opaque file.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::AppError;

/// Largest width or height accepted: phones take up to about 8,000 px.
pub const MAX_SIDE: u32 = 12_000;
/// Most memory one decode may take.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// The copies made of each photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// About 320 px on the longer side: the queue and the detail view.
    Thumb,
    /// About 1280 px: what the reviewer opens.
    Review,
}

impl Size {
    pub fn parse(s: &str) -> Option<Size> {
        match s {
            "thumb" => Some(Size::Thumb),
            "review" => Some(Size::Review),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Size::Thumb => "thumb",
            Size::Review => "review",
        }
    }

    fn max_side(self) -> u32 {
        match self {
            Size::Thumb => 320,
            Size::Review => 1280,
        }
    }
}

/// The image format of these bytes, if they start like a JPEG, PNG or WebP file.
pub fn sniff(head: &[u8]) -> Option<ImageFormat> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadImage(String);

/// Whether a JPEG reaches its end-of-image marker. The JPEG decoder fills a cut-off image
/// with grey rather than failing, so a truncated upload must be caught here: the segments
/// before the first start-of-scan are skipped by their lengths (an EXIF thumbnail inside them
/// has markers of its own), and entropy-coded data cannot contain `FF D9` (a data byte `FF`
/// is always followed by `00`), so an `FF D9` after the scan starts is the real end.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return false;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0xDA {
            return bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        pos += 2 + len;
    }
    false
}

/// Whether a PNG's chunks follow one another to its `IEND` chunk, each with a correct CRC.
fn png_complete(bytes: &[u8]) -> bool {
    let mut pos = 8;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(end) = (pos + 8).checked_add(len) else {
            return false;
        };
        let (Some(body), Some(crc)) = (bytes.get(pos + 4..end), bytes.get(end..end + 4)) else {
            return false;
        };
        if crc32fast::hash(body).to_be_bytes() != crc {
            return false;
        }
        if &header[4..8] == b"IEND" {
            return true;
        }
        pos = end + 4;
    }
    false
}

/// Whether a WebP file is as long as its RIFF header says.
fn webp_complete(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 8 == bytes.len()
}

/// The image's format and decoder, once its structure is whole and its size within the limits.
fn open(bytes: &[u8]) -> Result<(ImageFormat, Box<dyn ImageDecoder + '_>), BadImage> {
    let format = sniff(bytes).ok_or_else(|| BadImage("not a JPEG, PNG or WebP image".into()))?;
    let complete = match format {
        ImageFormat::Jpeg => jpeg_complete(bytes),
        ImageFormat::Png => png_complete(bytes),
        _ => webp_complete(bytes),
    };
    if !complete {
        return Err(BadImage(format!(
            "the image is damaged or incomplete (the {} file ends before its end or fails its checksums)",
            format.extensions_str().first().unwrap_or(&"image").to_uppercase()
        )));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let decoder = reader.into_decoder().map_err(|e| BadImage(describe(&e)))?;
    Ok((format, Box::new(decoder)))
}

/// Decodes the whole image under the limits and turns it upright.
fn decode(bytes: &[u8]) -> Result<DynamicImage, BadImage> {
    let (_, mut decoder) = open(bytes)?;
    // A broken EXIF block must not lose the photo: it is then shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| BadImage(describe(&e)))?;
    img.apply_orientation(orientation);
    Ok(img)
}

fn describe(e: &image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => format!(
            "the image is larger than {MAX_SIDE}×{MAX_SIDE} pixels or needs more memory than allowed"
        ),
        other => format!("the image is damaged or incomplete ({other})"),
    }
}

/// Checks that the bytes, if they are an image, are whole and within the limits, without
/// decoding its pixels; returns its upright size. Non-image bytes pass (`None`): they are
/// stored as plain files.
pub fn verify(bytes: &[u8]) -> Result<Option<(u32, u32)>, BadImage> {
    if sniff(bytes).is_none() {
        return Ok(None);
    }
    let (_, mut decoder) = open(bytes)?;
    let (width, height) = decoder.dimensions();
    let turned = matches!(
        decoder.orientation(),
        Ok(Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH)
    );
    Ok(Some(if turned {
        (height, width)
    } else {
        (width, height)
    }))
}

/// A smaller upright JPEG copy without any metadata. Images already small enough keep their
/// size but are still re-encoded, which is what drops their metadata.
pub fn derive(bytes: &[u8], size: Size) -> Result<Vec<u8>, BadImage> {
    let img = decode(bytes)?;
    let side = size.max_side();
    let img = if img.width() > side || img.height() > side {
        img.thumbnail(side, side)
    } else {
        img
    };
    let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82);
    rgb.write_with_encoder(encoder)
        .map_err(|e| BadImage(format!("cannot encode the copy: {e}")))?;
    Ok(out)
}

/// The content type to send a stored attachment with. Only types a browser will not run as a
/// page or script are passed on; the rest download as `application/octet-stream`.
pub fn safe_content_type(claimed: &str, head: &[u8]) -> &'static str {
    if let Some(format) = sniff(head) {
        return match format {
            ImageFormat::Png => "image/png",
            ImageFormat::WebP => "image/webp",
            _ => "image/jpeg",
        };
    }
    const PASSIVE: [&str; 9] = [
        "audio/mpeg",
        "audio/mp4",
        "audio/amr",
        "audio/ogg",
        "audio/wav",
        "video/mp4",
        "video/3gpp",
        "application/pdf",
        "text/csv",
    ];
    let essence = claimed
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    PASSIVE
        .into_iter()
        .find(|t| *t == essence)
        .unwrap_or("application/octet-stream")
}

impl From<BadImage> for AppError {
    fn from(e: BadImage) -> Self {
        AppError::client(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "bad_image",
            e.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, RgbImage};

    /// A 40×20 photo: left half red, right half blue.
    fn landscape() -> RgbImage {
        ImageBuffer::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut out, format)
            .expect("encode");
        out.into_inner()
    }

    /// Inserts an APP1 Exif segment (built with kamadak-exif's writer) after the JPEG's SOI:
    /// orientation 6 (rotate 90° clockwise to view) and a GPS position, as phones write them.
    fn with_exif(jpeg: &[u8]) -> Vec<u8> {
        use exif::experimental::Writer;
        use exif::{Field, In, Rational, Tag, Value};
        let orientation = Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![6]),
        };
        let lat_ref = Field {
            tag: Tag::GPSLatitudeRef,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"N".to_vec()]),
        };
        let lat = Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![
                Rational { num: 21, denom: 1 },
                Rational { num: 19, denom: 1 },
                Rational {
                    num: 3210,
                    denom: 100,
                },
            ]),
        };
        let lon_ref = Field {
            tag: Tag::GPSLongitudeRef,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"E".to_vec()]),
        };
        let lon = Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![
                Rational { num: 103, denom: 1 },
                Rational { num: 54, denom: 1 },
                Rational {
                    num: 4500,
                    denom: 100,
                },
            ]),
        };
        let mut writer = Writer::new();
        for f in [&orientation, &lat_ref, &lat, &lon_ref, &lon] {
            writer.push_field(f);
        }
        let mut tiff = Cursor::new(Vec::new());
        writer.write(&mut tiff, false).expect("exif");
        let tiff = tiff.into_inner();
        let mut segment = b"Exif\0\0".to_vec();
        segment.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&segment);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
        exif::Reader::new()
            .read_from_container(&mut Cursor::new(bytes))
            .ok()
    }

    fn decoded(bytes: &[u8]) -> RgbImage {
        image::load_from_memory(bytes).expect("decodes").to_rgb8()
    }

    #[test]
    fn jpeg_with_exif_orientation_and_gps_is_turned_upright_and_stripped() {
        use exif::{In, Tag};
        let photo = with_exif(&encode(&landscape(), ImageFormat::Jpeg));
        // The fixture really carries what a phone writes.
        let exif = exif_of(&photo).expect("fixture has EXIF");
        assert!(exif.get_field(Tag::GPSLatitude, In::PRIMARY).is_some());
        assert_eq!(
            exif.get_field(Tag::Orientation, In::PRIMARY)
                .and_then(|f| f.value.get_uint(0)),
            Some(6)
        );

        assert_eq!(verify(&photo).expect("valid"), Some((20, 40)));
        for size in [Size::Thumb, Size::Review] {
            let copy = derive(&photo, size).expect("derived");
            assert_eq!(sniff(&copy), Some(ImageFormat::Jpeg));
            assert!(exif_of(&copy).is_none(), "metadata stripped from {size:?}");
            let img = decoded(&copy);
            // Rotated 90° clockwise: portrait, red (the old left) now on top.
            assert_eq!((img.width(), img.height()), (20, 40));
            let top = img.get_pixel(10, 5);
            let bottom = img.get_pixel(10, 35);
            assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
            assert!(
                bottom[2] > 200 && bottom[0] < 60,
                "bottom is blue: {bottom:?}"
            );
        }
    }

    #[test]
    fn large_photos_shrink_to_the_size_asked_for() {
        let big: RgbImage = ImageBuffer::from_fn(1600, 900, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let jpeg = encode(&big, ImageFormat::Jpeg);
        let thumb = decoded(&derive(&jpeg, Size::Thumb).expect("thumb"));
        assert_eq!((thumb.width(), thumb.height()), (320, 180));
        let review = decoded(&derive(&jpeg, Size::Review).expect("review"));
        assert_eq!((review.width(), review.height()), (1280, 720));
    }

    #[test]
    fn png_and_webp_are_images_too() {
        let png = encode(&landscape(), ImageFormat::Png);
        assert_eq!(sniff(&png), Some(ImageFormat::Png));
        assert_eq!(verify(&png).expect("png"), Some((40, 20)));
        let copy = decoded(&derive(&png, Size::Thumb).expect("png thumb"));
        assert_eq!((copy.width(), copy.height()), (40, 20));
        assert_eq!(
            safe_content_type("application/octet-stream", &png),
            "image/png"
        );
        let webp = encode(&landscape(), ImageFormat::WebP);
        assert_eq!(verify(&webp).expect("webp"), Some((40, 20)));
        assert_eq!(safe_content_type("image/jpeg", &webp), "image/webp");
    }

    #[test]
    fn truncated_image_is_refused() {
        let big: RgbImage = ImageBuffer::from_fn(300, 200, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 0])
        });
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let bytes = encode(&big, format);
            assert!(verify(&bytes).is_ok(), "{format:?} whole");
            for cut in [&bytes[..bytes.len() / 2], &bytes[..bytes.len() - 1]] {
                let err = verify(cut).expect_err("truncated");
                assert!(
                    err.to_string().contains("damaged or incomplete"),
                    "{format:?}: {err}"
                );
                assert!(derive(cut, Size::Thumb).is_err());
            }
        }
    }

    /// The check on arrival decodes no pixel, so a PNG's checksums are what catch damage inside.
    #[test]
    fn png_with_a_damaged_chunk_is_refused() {
        let mut png = encode(&landscape(), ImageFormat::Png);
        let middle = png.len() / 2;
        png[middle] ^= 0x55;
        let err = verify(&png).expect_err("damaged");
        assert!(err.to_string().contains("checksums"), "{err}");
    }

    /// A PNG that claims 60,000 × 60,000 pixels (10.8 GB of RGB) in a few dozen bytes.
    pub(crate) fn png_bomb() -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(data);
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        }
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = 0xFFFF_FFFFu32;
            for b in bytes {
                crc ^= u32::from(*b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn decompression_bomb_is_refused_before_decoding() {
        let bomb = png_bomb();
        assert!(bomb.len() < 100);
        let err = verify(&bomb).expect_err("bomb");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(derive(&bomb, Size::Review).is_err());
    }

    #[test]
    fn other_files_are_not_images_and_download_safely() {
        assert_eq!(verify(b"RIFF....AVI LIST").expect("not an image"), None);
        assert_eq!(verify(b"%PDF-1.7").expect("not an image"), None);
        assert_eq!(
            safe_content_type("application/pdf", b"%PDF-1.7"),
            "application/pdf"
        );
        assert_eq!(safe_content_type("audio/amr; x=1", b"#!AMR"), "audio/amr");
        for dangerous in [
            "text/html",
            "image/svg+xml",
            "application/javascript",
            "text/xml",
            "",
        ] {
            assert_eq!(
                safe_content_type(dangerous, b"<svg onload=alert(1)>"),
                "application/octet-stream"
            );
        }
        // A file claiming to be a JPEG but holding HTML is not served as an image.
        assert_eq!(
            safe_content_type("image/jpeg", b"<html>"),
            "application/octet-stream"
        );
    }
}
