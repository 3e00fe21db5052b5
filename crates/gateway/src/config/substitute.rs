//! `${VAR}` and `${VAR:-default}` substitution over a parsed YAML tree.
//!
//! Substitution runs on string scalars after parsing (so a value can never inject YAML syntax),
//! and knows the path of each scalar, so an unset variable is reported with its YAML path.
//! A scalar that is exactly one placeholder is re-read as a YAML scalar, so `port: ${PORT:-3001}`
//! stays a number. `$${` is a literal `${`.

use super::ConfigError;
use serde_norway::Value;

/// Looks up environment variables; a function so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Substitutes every placeholder in `value`, in place.
pub fn substitute_tree(value: &mut Value, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    walk(value, &mut String::new(), env)
}

fn walk(value: &mut Value, path: &mut String, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            let (out, whole) = substitute_str(s, path, env)?;
            *value = if whole {
                serde_norway::from_str::<Value>(&out)
                    .ok()
                    .filter(|v| !matches!(v, Value::Mapping(_) | Value::Sequence(_)))
                    .unwrap_or(Value::String(out))
            } else {
                Value::String(out)
            };
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k {
                    Value::String(s) => path.push_str(s),
                    other => path.push_str(&serde_norway::to_string(other).unwrap_or_default()),
                }
                walk(v, path, env)?;
                path.truncate(len);
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Substitutes placeholders in one string. Returns the result and whether the input was exactly
/// one placeholder.
pub fn substitute_str(
    s: &str,
    path: &str,
    env: EnvLookup<'_>,
) -> Result<(String, bool), ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut placeholders = 0;
    let mut literal = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        if !rest[..pos].is_empty() {
            literal = true;
        }
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            literal = true;
            rest = after;
        } else if let Some(body_start) = tail.strip_prefix("${") {
            let end = body_start.find('}').ok_or_else(|| ConfigError::Syntax {
                path: path.to_owned(),
                message: format!("unterminated ${{ in {s:?}"),
            })?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::Syntax {
                    path: path.to_owned(),
                    message: format!("invalid variable name {name:?} in {s:?}"),
                });
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(ConfigError::MissingVariable {
                        variable: name.to_owned(),
                        path: path.to_owned(),
                    })
                }
            }
            placeholders += 1;
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = &tail[1..];
        }
    }
    if !rest.is_empty() {
        literal = true;
    }
    out.push_str(rest);
    Ok((out, placeholders == 1 && !literal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "PORT" => Some("4000".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(
            substitute_str("a-${KEY}-b", "p", &env).unwrap(),
            ("a-sk-1-b".into(), false)
        );
        assert_eq!(
            substitute_str("${NOPE:-x y}", "p", &env).unwrap(),
            ("x y".into(), true)
        );
        assert_eq!(
            substitute_str("${EMPTY:-d}", "p", &env).unwrap().0,
            "d",
            "an empty variable counts as unset, as in the shell's :- form"
        );
        assert_eq!(
            substitute_str("cost $5 $${KEY}", "p", &env).unwrap().0,
            "cost $5 ${KEY}"
        );
    }

    #[test]
    fn missing_variable_names_variable_and_path() {
        let mut v: Value =
            serde_norway::from_str("plugins:\n  stt:\n    deepgram:\n      api_key: ${DG_KEY}\n")
                .unwrap();
        let err = substitute_tree(&mut v, &env).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingVariable {
                variable: "DG_KEY".into(),
                path: "plugins.stt.deepgram.api_key".into()
            }
        );
        assert!(err.to_string().contains("DG_KEY"));
        assert!(err.to_string().contains("plugins.stt.deepgram.api_key"));
    }

    #[test]
    fn whole_placeholders_keep_scalar_types() {
        let mut v: Value =
            serde_norway::from_str("port: ${PORT}\nname: \"${PORT}x\"\nlist: [\"${KEY}\"]\n")
                .unwrap();
        substitute_tree(&mut v, &env).unwrap();
        assert_eq!(v["port"], Value::Number(4000.into()));
        assert_eq!(v["name"], Value::String("4000x".into()));
        assert_eq!(v["list"][0], Value::String("sk-1".into()));
    }

    #[test]
    fn bad_syntax_is_an_error() {
        assert!(substitute_str("${KEY", "p", &env).is_err());
        assert!(substitute_str("${bad name}", "p", &env).is_err());
    }
}
