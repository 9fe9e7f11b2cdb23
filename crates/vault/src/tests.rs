//! The vault's suite. Each adapter test is written once, as an async fn
//! taking a [`Fixture`], and run on both adapters: the local vault with a
//! master key file in a fresh temporary folder, and KMS against moto with a
//! fresh key of its own (so tests run in parallel).
//!
//! The KMS half needs `ASCEND_SYNC_TEST_AWS_ENDPOINT` (moto's URL) and the
//! AWS test credentials, and fails without them.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    AscendCredentials, Endpoints, KmsConfig, KmsVault, LocalVault, Purpose, SealContext, Sealed,
    Vault, VaultError,
};

const ENDPOINT_VAR: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";

macro_rules! on_both_adapters {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::Fixture::local();
                    super::$name(&fixture).await;
                }
            )*
        }
        mod kms {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::Fixture::kms().await;
                    super::$name(&fixture).await;
                }
            )*
        }
    };
}

on_both_adapters!(
    seal_then_open_round_trips,
    another_context_fails,
    flipped_bytes_fail,
    two_seals_differ,
    rewrap_changes_only_the_data_key,
    debug_output_holds_no_secret,
    credentials_round_trip_and_stay_with_their_practice,
    credentials_sealed_before_urls_were_bound_still_open,
);

/// A fresh vault of one kind.
struct Fixture {
    vault: Vault,
    /// KMS: a client to create a second key; local: None.
    kms: Option<aws_sdk_kms::Client>,
    _dir: Option<TempDir>,
}

impl Fixture {
    fn local() -> Fixture {
        let dir = TempDir::new();
        let vault = LocalVault::open(&dir.path.join("master.key")).expect("the local vault opens");
        Fixture {
            vault: Vault::Local(vault),
            kms: None,
            _dir: Some(dir),
        }
    }

    async fn kms() -> Fixture {
        let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
            panic!("{ENDPOINT_VAR} is not set: start moto (`cargo xtask services`)");
        };
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .load()
            .await;
        let client = aws_sdk_kms::Client::new(&sdk);
        let key_id = create_key(&client).await;
        let vault = KmsVault::connect(KmsConfig {
            endpoint_url: Some(endpoint),
            region: Some("us-east-1".into()),
            key_id,
        })
        .await
        .expect("the KMS vault connects");
        Fixture {
            vault: Vault::Kms(vault),
            kms: Some(client),
            _dir: None,
        }
    }

    /// A key to rewrap to: a new KMS key, or the local vault's own.
    async fn rewrap_target(&self) -> String {
        match (&self.vault, &self.kms) {
            (Vault::Kms(_), Some(client)) => create_key(client).await,
            (Vault::Local(local), _) => local.key_id().to_owned(),
            (Vault::Kms(_), None) => unreachable!("a KMS fixture has a client"),
        }
    }
}

async fn create_key(client: &aws_sdk_kms::Client) -> String {
    let key = client
        .create_key()
        .send()
        .await
        .expect("moto creates a key");
    key.key_metadata()
        .map(|m| m.key_id().to_owned())
        .expect("the new key has metadata")
}

fn ctx(practice: &str) -> SealContext {
    SealContext::new(practice, Purpose::AscendCredentials)
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

const SECRET: &str = "s3cr3t-ÄSCEND-client-secret-ü-😀";

fn is_refused(err: &VaultError) -> bool {
    matches!(
        err,
        VaultError::WrongContext { .. } | VaultError::Tampered { .. }
    )
}

async fn seal_then_open_round_trips(f: &Fixture) {
    let big: String = "abcdefgh".repeat(512);
    assert_eq!(big.len(), 4096);
    for text in [SECRET, "x", big.as_str(), "日本語の秘密 🔑"] {
        let c = ctx("practice-1");
        let sealed = f.vault.seal(&c, &secret(text)).await.expect("seals");
        assert_eq!(sealed.ciphertext.len(), text.len() + 16);
        let opened = f.vault.open(&c, &sealed).await.expect("opens");
        assert_eq!(opened.expose_secret(), text);
    }
}

async fn another_context_fails(f: &Fixture) {
    let sealed = f
        .vault
        .seal(&ctx("practice-1"), &secret(SECRET))
        .await
        .expect("seals");
    let err = f
        .vault
        .open(&ctx("practice-2"), &sealed)
        .await
        .expect_err("another practice");
    assert!(is_refused(&err), "{err:?}");
    assert!(err.to_string().contains("reconnect the practice"), "{err}");
    let err = f
        .vault
        .open(&ctx("practice-1x"), &sealed)
        .await
        .expect_err("a longer id");
    assert!(is_refused(&err), "{err:?}");
    let err = f
        .vault
        .open(&ctx(""), &sealed)
        .await
        .expect_err("an empty id");
    assert!(is_refused(&err), "{err:?}");
    // Another purpose: the AAD binds the purpose too (Purpose has a single
    // variant, so the secret's AAD is checked directly with another one).
    let c = ctx("practice-1");
    let data_key = match &f.vault {
        Vault::Local(local) => local.unwrap_data_key(&c, &sealed).expect("unwraps"),
        Vault::Kms(kms) => kms.decrypt_data_key(&c, &sealed).await.expect("decrypts"),
    };
    let key = crate::crypto::aead_key(&data_key[..]).expect("a key");
    let mut other = c.aad("secret");
    let tail = other.len() - "ascend-client-secret".len();
    other[tail] ^= 1;
    assert!(crate::crypto::decrypt(&key, sealed.nonce, &other, &sealed.ciphertext).is_none());
    assert!(
        crate::crypto::decrypt(&key, sealed.nonce, &c.aad("secret"), &sealed.ciphertext).is_some()
    );
}

async fn flipped_bytes_fail(f: &Fixture) {
    let c = ctx("practice-1");
    let sealed = f.vault.seal(&c, &secret(SECRET)).await.expect("seals");
    let mut variants: Vec<Sealed> = Vec::new();
    for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
        let mut s = sealed.clone();
        s.ciphertext[i] ^= 0x01;
        variants.push(s);
    }
    for i in [0, 11] {
        let mut s = sealed.clone();
        s.nonce[i] ^= 0x80;
        variants.push(s);
    }
    for i in [
        0,
        sealed.encrypted_data_key.len() / 2,
        sealed.encrypted_data_key.len() - 1,
    ] {
        let mut s = sealed.clone();
        s.encrypted_data_key[i] ^= 0x01;
        variants.push(s);
    }
    let mut truncated = sealed.clone();
    truncated.ciphertext.pop();
    variants.push(truncated);
    for s in &variants {
        match f.vault.open(&c, s).await {
            Ok(opened) => panic!(
                "a damaged seal opened (to the right text: {})",
                opened.expose_secret() == SECRET
            ),
            // moto's ciphertext blob starts with the key id in clear: a
            // flip there names another key, which moto answers with
            // AccessDeniedException or NotFoundException (real KMS answers
            // a damaged blob with InvalidCiphertextException, a refusal).
            Err(VaultError::KmsDenied { .. } | VaultError::KeyNotFound { .. })
                if matches!(f.vault, Vault::Kms(_))
                    && s.encrypted_data_key != sealed.encrypted_data_key => {}
            Err(err) => assert!(is_refused(&err), "{err:?}"),
        }
    }
}

async fn two_seals_differ(f: &Fixture) {
    let c = ctx("practice-1");
    let a = f.vault.seal(&c, &secret(SECRET)).await.expect("seals");
    let b = f.vault.seal(&c, &secret(SECRET)).await.expect("seals");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_ne!(a.encrypted_data_key, b.encrypted_data_key);
    assert_eq!(a.key_id, b.key_id);
}

async fn rewrap_changes_only_the_data_key(f: &Fixture) {
    let c = ctx("practice-1");
    let sealed = f.vault.seal(&c, &secret(SECRET)).await.expect("seals");
    let target = f.rewrap_target().await;
    let rewrapped = f.vault.rewrap(&c, &sealed, &target).await.expect("rewraps");
    assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
    assert_eq!(rewrapped.nonce, sealed.nonce);
    assert_ne!(rewrapped.encrypted_data_key, sealed.encrypted_data_key);
    match &f.vault {
        Vault::Kms(_) => {
            assert_ne!(rewrapped.key_id, sealed.key_id);
            assert!(rewrapped.key_id.contains(&target), "{}", rewrapped.key_id);
        }
        Vault::Local(_) => assert_eq!(rewrapped.key_id, sealed.key_id),
    }
    let opened = f.vault.open(&c, &rewrapped).await.expect("opens");
    assert_eq!(opened.expose_secret(), SECRET);
    // Rewrapping checks the context too.
    let err = f
        .vault
        .rewrap(&ctx("practice-2"), &sealed, &target)
        .await
        .expect_err("another practice");
    assert!(is_refused(&err), "{err:?}");
}

async fn debug_output_holds_no_secret(f: &Fixture) {
    let c = ctx("practice-1");
    let sealed = f.vault.seal(&c, &secret(SECRET)).await.expect("seals");
    let data_key = match &f.vault {
        Vault::Local(local) => local.unwrap_data_key(&c, &sealed).expect("unwraps"),
        Vault::Kms(kms) => kms.decrypt_data_key(&c, &sealed).await.expect("decrypts"),
    };
    let key_dec = format!("{:?}", &data_key[..]);
    let key_hex: String = data_key.iter().map(|b| format!("{b:02x}")).collect();
    let ct_dec = format!("{:?}", &sealed.ciphertext[..]);
    let edk_dec = format!("{:?}", &sealed.encrypted_data_key[..]);
    let mut outputs = vec![
        format!("{sealed:?}"),
        format!("{:?}", f.vault),
        format!("{c:?}"),
    ];
    let mut damaged = sealed.clone();
    damaged.ciphertext[0] ^= 1;
    for err in [
        f.vault
            .open(&ctx("practice-2"), &sealed)
            .await
            .expect_err("refused"),
        f.vault.open(&c, &damaged).await.expect_err("refused"),
        f.vault
            .rewrap(&c, &sealed, "local:0000000000000000")
            .await
            .expect_err("refused"),
    ] {
        outputs.push(format!("{err:?}"));
        outputs.push(err.to_string());
    }
    outputs.push(format!(
        "{:?}",
        f.vault.open(&c, &sealed).await.expect("opens")
    ));
    for out in &outputs {
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(&key_dec), "{out}");
        assert!(!out.contains(&key_hex), "{out}");
        assert!(!out.contains(&ct_dec), "{out}");
        assert!(!out.contains(&edk_dec), "{out}");
    }
}

// Local only.

#[tokio::test]
async fn local_key_file_is_0600_and_reopens() {
    let dir = TempDir::new();
    let path = dir.path.join("master.key");
    let vault = Vault::Local(LocalVault::open(&path).expect("opens"));
    let meta = std::fs::metadata(&path).expect("the key file exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let c = ctx("practice-1");
    let sealed = vault.seal(&c, &secret(SECRET)).await.expect("seals");
    assert!(sealed.key_id.starts_with("local:"));
    assert_eq!(sealed.key_id.len(), "local:".len() + 16);

    let again = Vault::Local(LocalVault::open(&path).expect("opens again"));
    let opened = again.open(&c, &sealed).await.expect("opens an old seal");
    assert_eq!(opened.expose_secret(), SECRET);

    // Another master key cannot open it.
    let other = Vault::Local(LocalVault::open(&dir.path.join("other.key")).expect("opens"));
    let err = other
        .open(&c, &sealed)
        .await
        .expect_err("another master key");
    assert!(matches!(err, VaultError::KeyNotFound { .. }), "{err:?}");
    // Rewrap to another local key is refused.
    let other_id = match &other {
        Vault::Local(l) => l.key_id().to_owned(),
        Vault::Kms(_) => unreachable!(),
    };
    let err = again
        .rewrap(&c, &sealed, &other_id)
        .await
        .expect_err("another key id");
    assert!(matches!(err, VaultError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn local_refuses_bad_key_files() {
    let dir = TempDir::new();
    let short = dir.path.join("short.key");
    std::fs::write(&short, [7u8; 31]).expect("written");
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = LocalVault::open(&short).expect_err("31 bytes");
    assert!(matches!(err, VaultError::MasterKeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("31 bytes"), "{err}");

    let open = dir.path.join("open.key");
    std::fs::write(&open, [7u8; 32]).expect("written");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = LocalVault::open(&open).expect_err("0644");
    assert!(matches!(err, VaultError::MasterKeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("0644"), "{err}");
    assert!(!err.to_string().contains("[7, 7"), "{err}");

    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    LocalVault::open(&open).expect("0600 and 32 bytes open");
}

#[tokio::test]
async fn kms_refuses_a_local_key_id_and_an_empty_config() {
    let err = KmsVault::connect(KmsConfig::default())
        .await
        .expect_err("no key");
    assert!(matches!(err, VaultError::Config { .. }), "{err:?}");
    let err = KmsVault::connect(KmsConfig {
        endpoint_url: Some("ftp://x".into()),
        region: Some("us-east-1".into()),
        key_id: "alias/x".into(),
    })
    .await
    .expect_err("not http");
    assert!(matches!(err, VaultError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn kms_errors_name_the_missing_key_and_the_unreachable_endpoint() {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        panic!("{ENDPOINT_VAR} is not set: start moto (`cargo xtask services`)");
    };
    let c = ctx("practice-1");
    let missing = Vault::Kms(
        KmsVault::connect(KmsConfig {
            endpoint_url: Some(endpoint),
            region: Some("us-east-1".into()),
            key_id: "alias/ascend-sync-no-such-key".into(),
        })
        .await
        .expect("connects"),
    );
    let err = missing
        .seal(&c, &secret(SECRET))
        .await
        .expect_err("no such key");
    assert!(matches!(err, VaultError::KeyNotFound { .. }), "{err:?}");

    let unreachable = Vault::Kms(
        KmsVault::connect(KmsConfig {
            endpoint_url: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            key_id: "alias/x".into(),
        })
        .await
        .expect("connects"),
    );
    let err = unreachable
        .seal(&c, &secret(SECRET))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, VaultError::KmsUnreachable { .. }), "{err:?}");
    assert!(!format!("{err:?}{err}").contains("s3cr3t"));
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ascend-vault-test-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temporary folder created");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn endpoints() -> Endpoints {
    Endpoints {
        token_url: "https://test.hs1api.com/oauth/client_credential/accesstoken".into(),
        api_base: "https://test.hs1api.com/ascend-gateway/api".into(),
    }
}

async fn credentials_round_trip_and_stay_with_their_practice(f: &Fixture) {
    let credentials = AscendCredentials {
        client_id: secret("client-id-Ω"),
        client_secret: secret("line one\nline two: a secret may hold a break"),
    };
    let sealed = f
        .vault
        .seal_credentials("practice-a", &credentials, &endpoints())
        .await
        .expect("credentials seal");
    let opened = f
        .vault
        .open_credentials("practice-a", &sealed)
        .await
        .expect("they open for their practice");
    assert_eq!(opened.credentials.client_id.expose_secret(), "client-id-Ω");
    assert_eq!(
        opened.credentials.client_secret.expose_secret(),
        "line one\nline two: a secret may hold a break"
    );
    assert_eq!(
        opened.endpoints,
        Some(endpoints()),
        "the URLs come back as sealed (v2)"
    );
    assert!(!format!("{opened:?}").contains("client-id"));
    assert!(!format!("{opened:?}").contains("line one"));
    let err = f
        .vault
        .open_credentials("practice-b", &sealed)
        .await
        .expect_err("another practice's row cannot open them");
    assert!(is_refused(&err), "unexpected error: {err}");
    for (id, secret_text) in [("", "x"), ("id", ""), ("two\nlines", "x")] {
        let bad = AscendCredentials {
            client_id: secret(id),
            client_secret: secret(secret_text),
        };
        let err = f
            .vault
            .seal_credentials("practice-a", &bad, &endpoints())
            .await
            .expect_err("refused");
        assert!(matches!(err, VaultError::BadCredentials { .. }), "{err}");
    }
    for bad in [
        Endpoints {
            token_url: "https://a/\nhttps://b/".into(),
            ..endpoints()
        },
        Endpoints {
            api_base: " ".into(),
            ..endpoints()
        },
    ] {
        let err = f
            .vault
            .seal_credentials("practice-a", &credentials, &bad)
            .await
            .expect_err("a URL that would change the plaintext's lines is refused");
        assert!(matches!(err, VaultError::BadCredentials { .. }), "{err}");
    }
}

/// A value sealed before URLs were bound (v1: the Client ID and Secret
/// only) opens, with no sealed URLs; an unknown version does not.
async fn credentials_sealed_before_urls_were_bound_still_open(f: &Fixture) {
    let ctx = SealContext::new("practice-a", Purpose::AscendCredentials);
    let v1 = f
        .vault
        .seal(&ctx, &secret("ascend-credentials/v1\nold-id\nold\nsecret"))
        .await
        .expect("a v1 value seals");
    let opened = f
        .vault
        .open_credentials("practice-a", &v1)
        .await
        .expect("a v1 value opens");
    assert_eq!(opened.credentials.client_id.expose_secret(), "old-id");
    assert_eq!(
        opened.credentials.client_secret.expose_secret(),
        "old\nsecret"
    );
    assert_eq!(opened.endpoints, None, "a v1 value has no sealed URLs");
    for unknown in [
        "ascend-credentials/v3\na\nb\nc\nd",
        "ascend-credentials/v2\nhttps://t\nhttps://a\nid-without-secret",
        "ascend-credentials/v1",
    ] {
        let sealed = f.vault.seal(&ctx, &secret(unknown)).await.expect("seals");
        let err = f
            .vault
            .open_credentials("practice-a", &sealed)
            .await
            .expect_err("not credentials of a known version");
        assert!(
            matches!(err, VaultError::Tampered { .. }),
            "{unknown:?}: {err}"
        );
    }
}
