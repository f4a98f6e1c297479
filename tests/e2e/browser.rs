//! Looks at a page the way a person does: headless Chromium (Debian's
//! `chromium`, installed by `.ci/run`) renders it, and the test reads the
//! rendered text and the colours of the screenshot.

use std::path::PathBuf;

/// What Chromium showed.
pub struct Page {
    /// The text of the rendered DOM, tags removed.
    pub text: String,
    /// Pixels in the amber of drifted rows.
    pub amber_pixels: usize,
    /// Pixels in the red of unsafe rows.
    pub red_pixels: usize,
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Opens `url` (a page the host simulator serves, as a person's browser
/// would); the screenshot lands in `target/screenshots/{name}.png` (and in
/// `docs/{name}.png` with `UPDATE_DOCS_SCREENSHOTS=1`). Returns `None` only
/// outside CI when Chromium is not installed.
pub async fn open(url: &str, name: &str) -> Option<Page> {
    if !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing: .ci/run installs Debian's chromium"
        );
        eprintln!(
            "skipping the browser check: {CHROMIUM} is not installed (apt-get install chromium)"
        );
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("browser-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("shot.png");

    let dom = chromium(&dir, &["--dump-dom", url]).await;
    chromium(
        &dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1600,700",
            url,
        ],
    )
    .await;
    keep_screenshot(&shot, name);

    let (amber_pixels, red_pixels) = count_colours(&std::fs::read(&shot).unwrap());
    Some(Page {
        text: strip_tags(&dom),
        amber_pixels,
        red_pixels,
    })
}

async fn chromium(profile: &std::path::Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(args)
        .output()
        .await
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn keep_screenshot(shot: &std::path::Path, name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let kept = root.join("target/screenshots");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::copy(shot, kept.join(format!("{name}.png"))).unwrap();
    if std::env::var_os("UPDATE_DOCS_SCREENSHOTS").is_some() {
        std::fs::copy(shot, root.join(format!("docs/{name}.png"))).unwrap();
    }
}

/// Counts pixels of the page's amber (#ffe08a) and red (#f4a3a3).
fn count_colours(png_bytes: &[u8]) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = buffer[..info.buffer_size()].chunks(channels);
    let near = |p: &[u8], rgb: [u8; 3]| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 6);
    pixels.fold((0, 0), |(amber, red), p| {
        (
            amber + usize::from(near(p, [0xff, 0xe0, 0x8a])),
            red + usize::from(near(p, [0xf4, 0xa3, 0xa3])),
        )
    })
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
