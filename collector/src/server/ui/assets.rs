//! The dashboard's files, embedded in the binary at build time from `collector/ui/`:
//! hand-written HTML, CSS and one JavaScript module, so the collector serves its own UI
//! with no CDN and no front-end build step.

pub const INDEX_HTML: &str = include_str!("../../../ui/index.html");
pub const LOGIN_HTML: &str = include_str!("../../../ui/login.html");

/// The files under `/ui/assets/`, by name, with their content types.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/style.css"),
    ),
];

/// The content type and body of an asset.
pub fn find(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, body)| (*t, *body))
}
