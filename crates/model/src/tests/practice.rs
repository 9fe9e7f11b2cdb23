use crate::check_practice_id;

#[test]
fn practice_ids_are_checked_at_connect_time() {
    for good in [
        "p1",
        "practice-001",
        "Smile_Dental.Main-St",
        &"a".repeat(64),
    ] {
        assert!(check_practice_id(good).is_ok(), "{good} was refused");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../etc",
        "has space",
        "tab\there",
        "naïve",
        "semi;colon",
        &"a".repeat(65),
    ] {
        let refused = check_practice_id(bad);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("1 to 64 characters")),
            "{bad:?}: {refused:?}"
        );
    }
}
