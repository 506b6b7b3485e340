//! How a failed command reports: one line on stderr, `error: ` and the chain of causes joined by
//! `: `, each cause once. Library errors often repeat their source in their own message
//! ("cannot load the model: <the io error>") and also return it as their source; printing both,
//! as anyhow's `Debug` does under "Caused by", says everything two or three times.

/// The message of `err` and its causes, each said once.
pub fn render(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    format!("error: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("x/config.json: {0}")]
        Io(#[from] std::io::Error),
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot load the model: {0}")]
        Load(#[from] Inner),
    }

    #[test]
    fn a_cause_repeated_in_its_parent_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::from(Outer::from(Inner::from(io)));
        assert_eq!(err.chain().count(), 3);
        assert_eq!(
            render(&err),
            "error: cannot load the model: x/config.json: no such file"
        );
    }

    #[test]
    fn context_and_a_new_cause_are_joined() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = anyhow::Error::from(io).context("writing report.json");
        assert_eq!(render(&err), "error: writing report.json: denied");
    }
}
