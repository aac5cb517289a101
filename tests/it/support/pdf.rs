//! Reading rendered PDFs back in tests: their text (pdf-extract) and their page sizes
//! (lopdf, re-exported by pdf-extract), so that a test checks what a reader would see
//! rather than the first bytes of a file.

#![allow(dead_code)]

/// The PDF's text, with runs of whitespace (including no-break spaces) collapsed to one
/// space so that tests can look for phrases regardless of how lines were broken.
pub fn text(pdf: &[u8]) -> String {
    let raw = pdf_extract::extract_text_from_mem(pdf).expect("failed to extract text from PDF");
    normalize(&raw)
}

/// The text of each page, normalized like `text`.
pub fn pages(pdf: &[u8]) -> Vec<String> {
    pdf_extract::extract_text_from_mem_by_pages(pdf)
        .expect("failed to extract text from PDF")
        .iter()
        .map(|page| normalize(page))
        .collect()
}

/// Collapses whitespace, so `1 234 567 ₽` with no-break spaces matches a plain search.
pub fn normalize(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '\u{a0}' || c == '\u{202f}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each page's MediaBox width and height in points (A4 portrait ≈ 595 × 842).
pub fn page_sizes(pdf: &[u8]) -> Vec<(f64, f64)> {
    let doc = pdf_extract::Document::load_mem(pdf).expect("failed to parse PDF");
    doc.get_pages()
        .values()
        .map(|&id| {
            let mut node = doc.get_object(id).and_then(|o| o.as_dict()).expect("a page dictionary");
            // MediaBox is inheritable: walk up the page tree until one has it.
            loop {
                if let Ok(b) = node.get(b"MediaBox").and_then(|b| b.as_array()) {
                    let n: Vec<f64> = b
                        .iter()
                        .map(|v| v.as_float().map(f64::from).unwrap_or_else(|_| v.as_i64().unwrap_or(0) as f64))
                        .collect();
                    return (n[2] - n[0], n[3] - n[1]);
                }
                let parent = node.get(b"Parent").and_then(|p| p.as_reference()).expect("a MediaBox in the page tree");
                node = doc.get_object(parent).and_then(|o| o.as_dict()).expect("a page tree node");
            }
        })
        .collect()
}

/// Whether a page is A4 portrait or landscape, to a point.
pub fn is_a4(size: (f64, f64)) -> bool {
    let (w, h) = size;
    let near = |a: f64, b: f64| (a - b).abs() < 1.0;
    (near(w, 595.28) && near(h, 841.89)) || (near(w, 841.89) && near(h, 595.28))
}
