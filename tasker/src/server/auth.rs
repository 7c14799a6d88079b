//! Who may call and what they may do: the [`Authenticator`] and [`Authorizer`] traits an
//! application implements (its own sessions, per-record decisions), and the built-in ones:
//! [`Auth`] (API keys stored as SHA-256 hashes, bearer JWTs signed with HS256 only) and
//! [`Permissions`] (the seed's `resource:action` grants).

use std::future::Future;
use std::pin::Pin;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The future the auth traits return; implement them with `Box::pin(async move { … })`.
pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A caller an [`Authenticator`] identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is (named in a 403 and free for an [`Authorizer`] to look up).
    pub name: String,
    /// The `resource:action` permissions it holds (`*` and `resource:*` grant more), as the
    /// built-in [`Permissions`] reads them.
    pub permissions: Vec<String>,
}

/// What a request asks to do: its route's permission and the records the route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access<'a> {
    /// The route's `resource:action` (`tasker.task:show`).
    pub permission: &'a str,
    /// The task of `/tasks/{id}…`, when the route names one (and the id is a number).
    pub task_id: Option<i64>,
    /// The step of `…/workflow_steps/{step_id}`.
    pub step_id: Option<i64>,
}

impl Access<'_> {
    /// The resource part of the permission (`tasker.task`).
    pub fn resource(&self) -> &str {
        self.permission
            .split_once(':')
            .map_or(self.permission, |p| p.0)
    }

    /// The action part of the permission (`show`).
    pub fn action(&self) -> &str {
        self.permission.split_once(':').map_or("", |p| p.1)
    }
}

/// A request refused for want of valid credentials (401), with the reason the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated(pub String);

/// A caller refused what it asked (403), with the reason it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden(pub String);

/// Decides who is calling, from a request's headers. Runs before anything else looks at a
/// request to a protected route.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller, or why it is refused.
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> AuthFuture<'a, Result<Caller, Unauthenticated>>;

    /// Whether it lets only callers it knows in; the server refuses to listen beyond loopback
    /// with one that does not (unless told to). True unless overridden.
    fn is_enabled(&self) -> bool {
        true
    }
}

/// Decides whether a caller may do what it asks, on the record the route names.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok` to let the request through, or why it is refused.
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: Access<'a>,
    ) -> AuthFuture<'a, Result<(), Forbidden>>;
}

/// The built-in [`Authorizer`]: a caller may do what its permissions grant, whatever the
/// record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Permissions;

impl Authorizer for Permissions {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: Access<'a>,
    ) -> AuthFuture<'a, Result<(), Forbidden>> {
        let granted = grants(&caller.permissions, access.permission);
        Box::pin(async move {
            if granted {
                Ok(())
            } else {
                Err(Forbidden(format!(
                    "`{}` lacks the permission `{}`",
                    caller.name, access.permission
                )))
            }
        })
    }
}

/// Whether `held` grants `permission` (`tasker.task:create`); `*` and `tasker.task:*` grant
/// more.
pub fn grants(held: &[String], permission: &str) -> bool {
    let resource = permission.split(':').next().unwrap_or("");
    held.iter()
        .any(|p| p == "*" || p == permission || p.strip_suffix(":*").is_some_and(|r| r == resource))
}

impl From<Unauthenticated> for ApiError {
    fn from(refused: Unauthenticated) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", refused.0)
    }
}

impl From<Forbidden> for ApiError {
    fn from(refused: Forbidden) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", refused.0)
    }
}

/// An API key: its name, the SHA-256 of its secret, and what it may do.
#[derive(Clone)]
pub struct ApiKey {
    name: String,
    hash: [u8; 32],
    permissions: Vec<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

impl ApiKey {
    /// A key from its secret (only its hash is kept).
    pub fn from_secret(
        name: impl Into<String>,
        secret: &str,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            hash: sha256(secret.as_bytes()),
            permissions: permissions.into_iter().map(Into::into).collect(),
        }
    }

    /// A key from the hex SHA-256 of its secret, as stored in configuration.
    pub fn from_sha256_hex(
        name: impl Into<String>,
        hex: &str,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Option<Self> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return None;
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self {
            name: name.into(),
            hash,
            permissions: permissions.into_iter().map(Into::into).collect(),
        })
    }
}

/// Verification of bearer JWTs: HS256 only (the algorithm is pinned, so a token cannot choose
/// `none` or another one), with `exp` required.
#[derive(Clone)]
pub struct JwtConfig {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig").finish_non_exhaustive()
    }
}

impl JwtConfig {
    /// Tokens signed with `secret` using HS256. Their `permissions` claim (a list of
    /// `resource:action`) says what they may do.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        // A token that is not valid yet is refused too (jsonwebtoken leaves `nbf` unchecked).
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            key: jsonwebtoken::DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Also requires the `iss` claim to be `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Also requires the `aud` claim to contain `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// How callers prove who they are.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Accepted API keys (`X-API-Key: SECRET` or `Authorization: Bearer SECRET`).
    pub api_keys: Vec<ApiKey>,
    /// Accepted JWTs (`Authorization: Bearer TOKEN`).
    pub jwt: Option<JwtConfig>,
}

impl Auth {
    /// No authentication: everyone may do everything. Only for loopback addresses, or with
    /// the server's explicit insecure flag.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any authentication is configured.
    pub fn is_enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }

    /// Adds an API key.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_keys.push(key);
        self
    }

    /// Accepts JWTs.
    pub fn jwt(mut self, jwt: JwtConfig) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Who is calling, from the request's headers.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Unauthenticated> {
        if !self.is_enabled() {
            return Ok(Caller {
                name: "anonymous".to_owned(),
                permissions: vec!["*".to_owned()],
            });
        }
        let unauthorized = |message: &str| Unauthenticated(message.to_owned());
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .or(bearer.filter(|t| t.matches('.').count() != 2));
        if let Some(secret) = api_key {
            let hash = sha256(secret.as_bytes());
            // Compare against every key in constant time, so timing reveals nothing.
            let mut found: Option<&ApiKey> = None;
            for key in &self.api_keys {
                let same = key
                    .hash
                    .iter()
                    .zip(hash.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
                if same {
                    found = Some(key);
                }
            }
            return match found {
                Some(key) => Ok(Caller {
                    name: key.name.clone(),
                    permissions: key.permissions.clone(),
                }),
                None => Err(unauthorized("invalid API key")),
            };
        }
        if let (Some(token), Some(jwt)) = (bearer, &self.jwt) {
            return match jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation) {
                Ok(data) => Ok(Caller {
                    name: data.claims.sub.unwrap_or_else(|| "jwt".to_owned()),
                    permissions: data.claims.permissions,
                }),
                Err(e) => Err(unauthorized(&format!("invalid token: {e}"))),
            };
        }
        Err(unauthorized(
            "authentication required: send `X-API-Key: KEY` or `Authorization: Bearer TOKEN`",
        ))
    }
}

impl Authenticator for Auth {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> AuthFuture<'a, Result<Caller, Unauthenticated>> {
        let caller = self.caller(headers);
        Box::pin(async move { caller })
    }

    fn is_enabled(&self) -> bool {
        Auth::is_enabled(self)
    }
}
