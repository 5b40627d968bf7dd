//! Recording the target stage as an image: its config's history lined up
//! with the steps (empty layers marked, as BuildKit does), and the image kept
//! as it is when nothing but its creation time would change.

use super::error::BuildError;
use super::stage::StageResult;
use crate::dockerfile::ImageConfig;
use crate::store::{Image, Store};

/// Records `result` with `config` as image `tag`, unless an identical image
/// (but for its creation time) is already there. Returns the image and
/// whether it was kept unchanged.
pub(super) fn commit(
    store: &Store,
    tag: &str,
    config: &ImageConfig,
    result: &StageResult,
) -> Result<(Image, bool), BuildError> {
    let mut config = config.clone();
    config.rootfs.diff_ids = result.layers.iter().map(|l| l.digest.to_string()).collect();
    mark_empty_layers(&mut config, &result.added);
    if let Ok(existing) = store.image(tag) {
        if let Ok(old) = ImageConfig::from_json(&existing.config) {
            if comparable(&old) == comparable(&config) && existing.layer_blobs() == result.layers {
                return Ok((existing, true));
            }
        }
    }
    let now = crate::timefmt::created_now();
    config.created = Some(now.clone());
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(now.clone());
        }
    }
    let bytes = serde_json::to_vec(&config).expect("an image config serializes");
    Ok((store.commit_image(tag, &bytes, &result.layers)?, false))
}

/// Steps that changed nothing are empty layers in the history, as in
/// BuildKit: the last history entries line up with `added`.
fn mark_empty_layers(config: &mut ImageConfig, added: &[Option<bool>]) {
    if config.history.len() < added.len() {
        return;
    }
    let skip = config.history.len() - added.len();
    for (h, added) in config.history[skip..].iter_mut().zip(added) {
        h.empty_layer = match added {
            Some(true) => None,
            Some(false) | None => Some(true),
        };
    }
}

/// A config without its creation times.
fn comparable(config: &ImageConfig) -> Option<serde_json::Value> {
    let mut c = config.clone();
    c.created = None;
    for h in &mut c.history {
        h.created = None;
    }
    serde_json::to_value(&c).ok()
}

/// For an externally built image, whether each of its last `steps` history
/// entries added a layer (the [`StageResult::added`] of those steps).
pub(super) fn history_added(config: &[u8], steps: usize) -> Vec<Option<bool>> {
    let history: Vec<bool> = ImageConfig::from_json(config)
        .map(|c| {
            c.history
                .iter()
                .map(|h| h.empty_layer != Some(true))
                .collect()
        })
        .unwrap_or_default();
    let tail = &history[history.len().saturating_sub(steps)..];
    let mut added = vec![None; steps - tail.len()];
    added.extend(tail.iter().map(|a| Some(*a)));
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_history_lines_up_with_the_last_steps() {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[
            {"created_by":"base"},
            {"created_by":"ENV A=1","empty_layer":true},
            {"created_by":"RUN x"}]}"#;
        assert_eq!(history_added(config, 2), vec![Some(false), Some(true)]);
        // Fewer history entries than steps: the missing ones count as config-only.
        assert_eq!(
            history_added(config, 4),
            vec![None, Some(true), Some(false), Some(true)]
        );
        assert_eq!(history_added(b"not json", 1), vec![None]);
    }

    #[test]
    fn steps_that_changed_nothing_are_empty_layers() {
        let mut config = ImageConfig::from_json(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[
            {"created_by":"base"},{"created_by":"RUN a"},{"created_by":"ENV A=1"},{"created_by":"RUN true"}]}"#,
        )
        .unwrap();
        mark_empty_layers(&mut config, &[Some(true), None, Some(false)]);
        let empty: Vec<_> = config.history.iter().map(|h| h.empty_layer).collect();
        assert_eq!(empty, [None, None, Some(true), Some(true)]);
    }
}
