//! PNG line charts drawn by the project itself: an RGB raster, a 5×7 bitmap font, and a PNG
//! encoder (zlib through `flate2`, CRC-32 from `flate2::Crc`). Enough for the benchmark plots
//! (latency percentiles against offered load, log-scale y) without a plotting stack and its
//! font dependencies. Floating point is used for pixel geometry only, never for reported figures.
#![allow(clippy::float_arithmetic)]

use std::io::Write;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// One line of a chart: name, colour, points (x, y), y > 0.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Colour.
    pub color: Rgb,
    /// Points in x order.
    pub points: Vec<(u64, u64)>,
}

/// A chart with a linear x axis and a log10 y axis.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// A dashed horizontal reference line (label, y).
    pub bound: Option<(String, u64)>,
    /// Width and height in pixels.
    pub size: (usize, usize),
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, px: vec![255; w * h * 3] }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn dot(&mut self, x: i64, y: i64, r: i64, c: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r {
                    self.set(x + dx, y + dy, c);
                }
            }
        }
    }

    /// A line of thickness `t` (Bresenham with a square brush); `dash` > 0 draws dashes.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), t: i64, c: Rgb, dash: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err, mut n) = (x0, y0, dx + dy, 0i64);
        loop {
            if dash == 0 || (n / dash) % 2 == 0 {
                for oy in 0..t {
                    for ox in 0..t {
                        self.set(x + ox - t / 2, y + oy - t / 2, c);
                    }
                }
            }
            n += 1;
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.set(x + (k as i64 * 6 + col) * scale + sx, y + row as i64 * scale + sy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Text rotated 90° counter-clockwise, reading bottom to top, starting at (x, y) going up.
    fn text_up(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.set(x + row as i64 * scale + sx, y - (k as i64 * 6 + col) * scale - sy, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Width in pixels of `s` at `scale`.
fn text_width(s: &str, scale: i64) -> i64 {
    s.chars().count() as i64 * 6 * scale
}

/// 5×7 glyphs, one byte per row, bit 4 the leftmost column. Unknown characters are blank.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        'a' => [0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0, 0, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0, 0, 0x0D, 0x13, 0x0F, 0x01, 0x01],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        'A'..='Z' => glyph(c.to_ascii_lowercase()),
        _ => [0; 7],
    }
}

/// A "nice" tick step (1, 2 or 5 × 10ⁿ) giving about `n` ticks over `span`.
fn nice_step(span: u64, n: u64) -> u64 {
    let raw = (span / n.max(1)).max(1);
    let mut p = 1u64;
    while p * 10 <= raw {
        p *= 10;
    }
    [1, 2, 5, 10].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10 * p)
}

/// Short label of an axis value: `1,500` → `1.5k`, `20000` → `20k`.
fn short(v: u64) -> String {
    if v >= 1_000_000 && v.is_multiple_of(100_000) {
        format!("{}.{}M", v / 1_000_000, v % 1_000_000 / 100_000).replace(".0M", "M")
    } else if v >= 1000 && v.is_multiple_of(100) {
        format!("{}.{}k", v / 1000, v % 1000 / 100).replace(".0k", "k")
    } else {
        v.to_string()
    }
}

impl Chart {
    /// Renders the chart as PNG bytes. Y values are microseconds, shown in ms on a log axis.
    pub fn png(&self) -> Vec<u8> {
        let (w, h) = self.size;
        let mut cv = Canvas::new(w, h);
        let (left, right, top, bottom) = (90i64, 30i64, 50i64, 70i64);
        let (pw, ph) = (w as i64 - left - right, h as i64 - top - bottom);
        let grey = [225, 225, 225];
        let dark = [40, 40, 40];

        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let x_max = xs.max().unwrap_or(1).max(1);
        let x_step = nice_step(x_max, 6);
        let x_top = x_max.div_ceil(x_step) * x_step;
        let ys: Vec<u64> =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1.max(1))).chain(self.bound.iter().map(|b| b.1)).collect();
        // Decades from the one at or below the smallest value to the one at or above the largest
        // (1 ms at least, in µs).
        let (mut lo, mut hi) = (1000u64, 1000u64);
        if let (Some(min), Some(max)) = (ys.iter().min(), ys.iter().max()) {
            while lo * 10 <= *min {
                lo *= 10;
            }
            hi = lo;
            while hi < *max {
                hi *= 10;
            }
        }
        if hi <= lo {
            hi = lo * 10;
        }
        let (llo, lhi) = ((lo as f64).log10(), (hi as f64).log10());
        let px_x = |x: u64| left + ((x as f64 / x_top as f64) * pw as f64).round() as i64;
        let px_y = |y: u64| top + ph - (((y.max(1) as f64).log10() - llo) / (lhi - llo) * ph as f64).round() as i64;

        // Grid and ticks.
        let mut x = 0;
        while x <= x_top {
            let gx = px_x(x);
            cv.line((gx, top), (gx, top + ph), 1, grey, 0);
            let label = short(x);
            cv.text(gx - text_width(&label, 2) / 2, top + ph + 10, &label, 2, dark);
            x += x_step;
        }
        let mut y = lo;
        while y <= hi {
            let gy = px_y(y);
            cv.line((left, gy), (left + pw, gy), 1, grey, 0);
            let label = if y >= 1000 { short(y / 1000) } else { format!("0.{}", "0".repeat(2 - (y.ilog10() as usize)) + "1") };
            cv.text(left - 10 - text_width(&label, 2), gy - 7, &label, 2, dark);
            y *= 10;
        }
        cv.line((left, top), (left, top + ph), 2, dark, 0);
        cv.line((left, top + ph), (left + pw, top + ph), 2, dark, 0);

        if let Some((label, b)) = &self.bound {
            let by = px_y(*b);
            cv.line((left, by), (left + pw, by), 2, [200, 40, 40], 6);
            cv.text(left + pw - text_width(label, 2) - 6, by - 20, label, 2, [200, 40, 40]);
        }
        // Last series first, each thinner than the one below it, so lines that coincide (p99 and
        // p99.9 often do) stay visible.
        for (k, s) in self.series.iter().enumerate().rev() {
            let pts: Vec<(i64, i64)> = s.points.iter().map(|&(x, y)| (px_x(x), px_y(y))).collect();
            let (t, r) = (2 + 2 * k as i64, 3 + 2 * k as i64);
            for pair in pts.windows(2) {
                cv.line(pair[0], pair[1], t, s.color, 0);
            }
            for p in &pts {
                cv.dot(p.0, p.1, r, s.color);
            }
        }
        // Legend, top left inside the plot.
        for (k, s) in self.series.iter().enumerate() {
            let ly = top + 14 + k as i64 * 24;
            cv.line((left + 16, ly + 6), (left + 46, ly + 6), 3, s.color, 0);
            cv.dot(left + 31, ly + 6, 5, s.color);
            cv.text(left + 56, ly, &s.name, 2, dark);
        }
        cv.text((w as i64 - text_width(&self.title, 2)) / 2, 14, &self.title, 2, dark);
        cv.text(left + (pw - text_width(&self.x_label, 2)) / 2, h as i64 - 28, &self.x_label, 2, dark);
        cv.text_up(14, top + (ph + text_width(&self.y_label, 2)) / 2, &self.y_label, 2, dark);
        encode_png(w, h, &cv.px)
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// Encodes 8-bit RGB pixels as a PNG (filter 0 on every row, zlib).
pub fn encode_png(w: usize, h: usize, rgb: &[u8]) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&u32::try_from(w).unwrap_or(u32::MAX).to_be_bytes());
    ihdr.extend_from_slice(&u32::try_from(h).unwrap_or(u32::MAX).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut raw = Vec::with_capacity((w * 3 + 1) * h);
    for row in rgb.chunks(w * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("writing to a Vec cannot fail");
    let idat = z.finish().expect("writing to a Vec cannot fail");
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The sweep plot: p50, p99 and p99.9 publish→durable against offered load, with the bound.
pub fn sweep_chart(sweep: &crate::report::SweepReport, build: &str) -> Chart {
    let pick = |f: fn(&crate::report::Latency) -> u64| sweep.steps.iter().map(|r| (r.offered_rate, f(&r.durable))).collect();
    Chart {
        title: format!("publish to durable latency vs offered load ({build} build)"),
        x_label: "offered load (events/s)".into(),
        y_label: "latency (ms, log scale)".into(),
        series: vec![
            Series { name: "p50".into(), color: [31, 119, 180], points: pick(|l| l.p50_us) },
            Series { name: "p99".into(), color: [255, 127, 14], points: pick(|l| l.p99_us) },
            Series { name: "p99.9".into(), color: [44, 160, 44], points: pick(|l| l.p999_us) },
        ],
        bound: Some((format!("bound p99 <= {} ms", sweep.bound_p99_us / 1000), sweep.bound_p99_us)),
        size: (960, 560),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_signature_header_and_end() {
        let png = encode_png(2, 1, &[255, 0, 0, 0, 255, 0]);
        assert_eq!(&png[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // CRC of an empty IEND chunk is the well-known AE 42 60 82.
        assert_eq!(&png[png.len() - 4..], &[0xAE, 0x42, 0x60, 0x82]);
    }

    #[test]
    fn ticks_and_labels() {
        assert_eq!(nice_step(10_000, 6), 2000);
        assert_eq!(nice_step(7, 6), 1);
        assert_eq!(short(1500), "1.5k");
        assert_eq!(short(20_000), "20k");
        assert_eq!(short(250), "250");
    }
}
