//! Rendering check of an SVG (feature `render-check`, for tests): rasterise it with resvg
//! (pure Rust) and report how much it draws, and check that the expected labels are text
//! of the document. Text is not rasterised (no fonts are loaded), so labels are checked in
//! the markup and shapes (axes, bars, lines) in the pixels.

/// What a rasterised SVG contains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rendered {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Pixels that are not (near) white.
    pub inked: usize,
}

/// Rasterises `svg`; an error names what failed. Checks that every label of `labels`
/// occurs as the content of a `<text>` element.
pub fn render_check(svg: &str, labels: &[&str]) -> Result<Rendered, String> {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .map_err(|e| format!("SVG does not parse: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| format!("empty canvas {}x{}", size.width(), size.height()))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    let inked = pixmap
        .data()
        .chunks_exact(4)
        .filter(|p| p[0] < 235 || p[1] < 235 || p[2] < 235)
        .count();
    let unescape = |t: &str| {
        t.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    let texts: Vec<String> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| {
            let (_, rest) = t.split_once('>')?;
            let (content, _) = rest.split_once("</text>")?;
            Some(unescape(content))
        })
        .collect();
    for l in labels {
        if !texts.iter().any(|t| t.contains(l)) {
            return Err(format!("label `{l}` is not a text of the SVG"));
        }
    }
    Ok(Rendered {
        width: size.width(),
        height: size.height(),
        inked,
    })
}
