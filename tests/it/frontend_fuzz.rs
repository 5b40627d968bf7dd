//! Property tests (a bounded fuzz run in CI): the parser, the planner and the
//! word expansion never panic or hang, whatever the input, and expansion keeps
//! its documented invariants.

use d2v::dockerfile::lex::{expand_heredoc, expand_word, expand_words, split_words};
use d2v::dockerfile::{plan, NoBaseImages, PlanOptions};
use proptest::prelude::*;

/// Fragments that steer random text toward Dockerfile syntax.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM scratch AS a\n".to_string()),
        Just("FROM a\n".to_string()),
        Just("ARG X=1\n".to_string()),
        Just("ENV A=\"$X\" B=${X:-d}\n".to_string()),
        Just("RUN <<EOF\necho hi\nEOF\n".to_string()),
        Just("RUN cat <<A <<-B\n".to_string()),
        Just("COPY <<F /f\n".to_string()),
        Just("COPY --from=a / /\n".to_string()),
        Just("EXPOSE 1-3/udp\n".to_string()),
        Just("ONBUILD RUN x\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("\\\n".to_string()),
        Just("`\n".to_string()),
        Just("WORKDIR ../x\n".to_string()),
        Just("HEALTHCHECK --interval=1s CMD x\n".to_string()),
        Just("SHELL [\"/bin/bash\",\"-c\"]\n".to_string()),
        Just("CMD [\"a\"\n".to_string()),
        Just("CMD [1, [\"x\"]]\n".to_string()),
        Just("ENTRYPOINT []\n".to_string()),
        Just("ENV A=$A$A B=${A//x/yy} C=${A/#*/z}\n".to_string()),
        Just("ARG D=${a:-${b:+${c%%*}}}\n".to_string()),
        Just("ENV W=C:\\\\\n".to_string()),
        Just("COPY -- --a b\n".to_string()),
        Just("COPY --chmod=u+x,go=rX a /b\n".to_string()),
        Just("RUN --mount=type=cache,target=c true\n".to_string()),
        Just("# check=skip=all;error=true\n".to_string()),
        Just("ONBUILD COPY <<A /a\n".to_string()),
        "\\$\\{[a-z]:-".prop_map(|s| s.repeat(40)),
        "[ -~\n\t]{0,40}",
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn planning_arbitrary_text_never_panics(parts in proptest::collection::vec(fragment(), 0..12)) {
        let text: String = parts.concat();
        let opts = PlanOptions { lenient_bases: true, ..PlanOptions::default() };
        if let Err(e) = plan(&text, &opts, &NoBaseImages) {
            // Every error renders, and a located one shows a caret.
            let shown = e.to_string();
            prop_assert!(!shown.is_empty());
            if e.location.is_some() && e.source_line.is_some() {
                prop_assert!(shown.contains('^'));
            }
        }
    }

    #[test]
    fn planning_random_bytes_never_panics(text in "\\PC{0,200}") {
        let _ = plan(&text, &PlanOptions::default(), &NoBaseImages);
    }

    #[test]
    fn expansion_never_panics(word in "[-a-zA-Z0-9_${}:+?#%'\"\\\\` ]{0,40}") {
        let vars: Vec<(String, String)> = vec![("A".into(), "x y".into()), ("E".into(), String::new())];
        let _ = expand_word(&word, '\\', &vars);
        let _ = expand_word(&word, '`', &vars);
        let _ = expand_words(&word, '\\', &vars);
        let _ = expand_heredoc(&word, &vars);
        let _ = split_words(&word, '\\');
    }

    #[test]
    fn plain_words_expand_to_themselves(word in "[a-zA-Z0-9_./:=@+-]{0,30}") {
        let none: Vec<(String, String)> = Vec::new();
        prop_assert_eq!(expand_word(&word, '\\', &none).unwrap(), word.clone());
    }

    #[test]
    fn single_quotes_protect_everything(inner in "[^']{0,30}") {
        let vars: Vec<(String, String)> = vec![("A".into(), "expanded".into())];
        let quoted = format!("'{inner}'");
        prop_assert_eq!(expand_word(&quoted, '\\', &vars).unwrap(), inner);
    }

    #[test]
    fn expand_words_splits_unquoted_values(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
        let vars: Vec<(String, String)> = vec![("V".into(), format!("{a} {b}"))];
        prop_assert_eq!(expand_words("$V", '\\', &vars).unwrap(), vec![a.clone(), b.clone()]);
        prop_assert_eq!(expand_words("\"$V\"", '\\', &vars).unwrap(), vec![format!("{a} {b}")]);
    }
}
