//! Static assets embedded in the binary, served under content-hash names
//! (`/assets/app.<hash>.css`) with a year-long immutable cache: a new build gets new names.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The cache-busting path, e.g. `/assets/app.1a2b3c4d5e6f.css`.
    pub path: String,
    /// Content type.
    pub content_type: &'static str,
    /// Bytes.
    pub body: &'static [u8],
}

/// Every asset the pages link to.
#[derive(Debug)]
pub struct Assets {
    /// The style sheet.
    pub css: Asset,
    /// The progressive-enhancement script.
    pub js: Asset,
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hash = hex::encode(&digest.as_ref()[..6]);
    Asset {
        path: format!("/assets/{stem}.{hash}.{ext}"),
        content_type,
        body,
    }
}

/// The embedded assets (computed once from constants compiled into the binary).
pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    css: asset(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    js: asset(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
});

/// `GET /assets/{name}`: only the current hashed names exist.
pub async fn serve(Path(name): Path<String>) -> Response {
    let a = &*ASSETS;
    let found = [&a.css, &a.js]
        .into_iter()
        .find(|x| x.path.strip_prefix("/assets/") == Some(name.as_str()));
    match found {
        Some(x) => {
            let mut r = x.body.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(x.content_type),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            r
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let a = &*ASSETS;
        assert!(a.css.path.starts_with("/assets/app.") && a.css.path.ends_with(".css"));
        assert_eq!(a.css.path.len(), "/assets/app..css".len() + 12);
        assert_ne!(a.css.path, a.js.path);
    }
}
