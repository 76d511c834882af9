use super::*;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, Viewport as ClipViewport,
};

fn request(json: serde_json::Value) -> ScreenshotRequest {
    serde_json::from_value(json).unwrap()
}

#[test]
fn switches_have_no_dashes_and_popups_stay_blocked() {
    for switch in BROWSER_SWITCHES {
        assert!(!switch.starts_with('-'), "{switch}");
        assert!(!switch.starts_with("disable-popup-blocking"), "{switch}");
    }
}

#[test]
fn clips_are_capped_in_each_dimension() {
    let clip = capped(ClipViewport {
        x: 5.0,
        y: 30_000.0,
        width: 100.0,
        height: 40_000.0,
        scale: 1.0,
    });
    assert_eq!(
        (clip.x, clip.y, clip.width, clip.height),
        (5.0, 30_000.0, 100.0, MAX_CAPTURE_PX)
    );
}

#[test]
fn jpeg_has_a_quality_png_none() {
    let png = request(serde_json::json!({"url": "https://example.com/"}));
    assert!(matches!(
        capture_format(&png),
        (CaptureScreenshotFormat::Png, None)
    ));
    let jpeg = request(serde_json::json!({"url": "https://example.com/", "format": "jpeg"}));
    assert!(matches!(
        capture_format(&jpeg),
        (CaptureScreenshotFormat::Jpeg, Some(80))
    ));
}

#[test]
fn the_selector_is_passed_to_the_page_as_a_json_string() {
    let js = element_rect_js("a[title=\"x\"]'); alert(1); ('");
    assert!(js.contains(r#"document.querySelector("a[title=\"x\"]'); alert(1); ('")"#));
}

#[test]
fn an_element_clip_needs_a_match_with_a_size() {
    let clip = element_clip(Some(
        serde_json::json!({"x": 1.5, "y": 2, "w": 30, "h": 40}),
    ))
    .unwrap();
    assert_eq!(
        (clip.x, clip.y, clip.width, clip.height),
        (1.5, 2.0, 30.0, 40.0)
    );
    let message = |v| match element_clip(v) {
        Err(ShotError::Page(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(message(None).contains("no element"));
    assert!(message(Some(serde_json::json!({"error": "invalid"}))).contains("not a valid"));
    assert!(message(Some(serde_json::json!({"x": 0, "y": 0, "w": 0, "h": 9}))).contains("no size"));
}
