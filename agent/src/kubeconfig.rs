//! How the kubelet authenticates to the API server, read from its `--kubeconfig`.
//!
//! CIS 4.2.10 ("`--rotate-certificates` not set to false") is about the kubelet's *client*
//! certificate, and the benchmark says it applies only when kubelets get their certificates
//! from the API server. A kubelet whose kubeconfig authenticates with a token or an exec
//! credential plugin (EKS and Bottlerocket use `aws-iam-authenticator`) has no client
//! certificate to rotate. This module answers one question about the kubeconfig: does the
//! kubelet's current user present a client certificate?
//!
//! The kubelet loads the file with client-go's `clientcmd` (an explicit path, no overrides):
//! `current-context` names a context, whose `user` names an entry of `users`. Anything this
//! reader cannot follow exactly (no current context, a name that is missing or listed twice,
//! a value of the wrong type) is an error, and the check then keeps its verdict on
//! `rotateCertificates` alone: an unreadable kubeconfig never turns a failure into a pass.
//! Nothing of the file's content leaves this module but the kind of credential (and an exec
//! plugin's command): kubeconfigs hold keys and tokens.

use crate::yaml::{self, Node};

/// What the kubelet's current kubeconfig user authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client-certificate` or `client-certificate-data`: a client certificate, which
    /// `rotateCertificates` renews.
    Certificate,
    /// Anything else, described for the report ("the exec credential plugin
    /// /usr/bin/aws-iam-authenticator", "a bearer token file", ...).
    NoCertificate(String),
}

/// Reads the credential kind of the kubeconfig's current user.
pub fn client_auth(text: &str) -> Result<ClientAuth, String> {
    let parsed = yaml::parse(text).map_err(|e| e.to_string())?;
    let root = as_map(&parsed.node, "the kubeconfig")?;
    let current = match entry(root, "current-context", "the kubeconfig")? {
        Some(Node::Str(s)) if !s.is_empty() => s.as_str(),
        Some(Node::Str(_)) | Some(Node::Null) | None => {
            return Err("it names no current-context".to_string())
        }
        Some(other) => {
            return Err(format!(
                "current-context is {}, not a string",
                other.kind_name()
            ))
        }
    };
    let context = named(root, "contexts", current)?;
    let context = entry(context, "context", &format!("context {current:?}"))?
        .ok_or_else(|| format!("context {current:?} has no context"))?;
    let context = as_map(context, &format!("context {current:?}"))?;
    let user = match entry(context, "user", &format!("context {current:?}"))? {
        Some(Node::Str(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(format!("context {current:?} names no user")),
    };
    let named_user = named(root, "users", user)?;
    let auth = entry(named_user, "user", &format!("user {user:?}"))?
        .ok_or_else(|| format!("user {user:?} has no credentials"))?;
    let auth = as_map(auth, &format!("user {user:?}"))?;
    let what = format!("user {user:?}");
    let set = |key: &str| -> Result<bool, String> {
        match entry(auth, key, &what)? {
            None | Some(Node::Null) => Ok(false),
            Some(Node::Str(s)) => Ok(!s.is_empty()),
            Some(Node::Map(m)) => Ok(!m.is_empty()),
            Some(other) => Err(format!("{what}: {key} is {}", other.kind_name())),
        }
    };
    if set("client-certificate")? || set("client-certificate-data")? {
        return Ok(ClientAuth::Certificate);
    }
    if let (true, Some(exec)) = (set("exec")?, entry(auth, "exec", &what)?) {
        let exec_what = format!("{what}: exec");
        match entry(as_map(exec, &exec_what)?, "command", &exec_what)? {
            Some(Node::Str(command)) if !command.is_empty() => {
                return Ok(ClientAuth::NoCertificate(format!(
                    "the exec credential plugin {command}"
                )))
            }
            _ => return Err(format!("{exec_what} names no command")),
        }
    }
    if set("token")? {
        return Ok(ClientAuth::NoCertificate("a bearer token".to_string()));
    }
    if set("tokenFile")? {
        return Ok(ClientAuth::NoCertificate("a bearer token file".to_string()));
    }
    if set("auth-provider")? {
        return Ok(ClientAuth::NoCertificate("an auth provider".to_string()));
    }
    if set("username")? {
        return Ok(ClientAuth::NoCertificate(
            "a username and password".to_string(),
        ));
    }
    Err(format!("{what} has no credentials"))
}

fn as_map<'a>(node: &'a Node, what: &str) -> Result<&'a [(String, Node)], String> {
    match node {
        Node::Map(m) => Ok(m),
        other => Err(format!("{what} is {}, not an object", other.kind_name())),
    }
}

/// The value of `key` in `map`; a key written twice is an error (which one would count
/// depends on the decoder, so nothing is concluded).
fn entry<'a>(map: &'a [(String, Node)], key: &str, what: &str) -> Result<Option<&'a Node>, String> {
    let mut found = map.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("{what} lists {key} twice"));
    }
    Ok(first)
}

/// The entry named `name` in the list `list` of `root` (`contexts`, `users`).
fn named<'a>(
    root: &'a [(String, Node)],
    list: &str,
    name: &str,
) -> Result<&'a [(String, Node)], String> {
    let items = match entry(root, list, "the kubeconfig")? {
        Some(Node::Seq(items)) => items,
        Some(other) => return Err(format!("{list} is {}, not a list", other.kind_name())),
        None => return Err(format!("it has no {list}")),
    };
    let mut matches = Vec::new();
    for item in items {
        let item = as_map(item, &format!("an entry of {list}"))?;
        if let Some(Node::Str(n)) = entry(item, "name", &format!("an entry of {list}"))? {
            if n == name {
                matches.push(item);
            }
        }
    }
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("{list} has no entry named {name:?}")),
        _ => Err(format!("{list} has several entries named {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// awslabs/amazon-eks-ami `templates/al2/runtime/kubelet-kubeconfig`, rendered.
    const EKS: &str = "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /etc/kubernetes/pki/ca.crt
    server: https://ABCDEF.gr7.us-west-2.eks.amazonaws.com
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubelet
  name: kubelet
current-context: kubelet
users:
- name: kubelet
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: /usr/bin/aws-iam-authenticator
      args:
        - \"token\"
        - \"-i\"
        - \"my-cluster\"
";

    /// kubeadm's `/etc/kubernetes/kubelet.conf` after TLS bootstrap.
    const KUBEADM: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:cp-1
  name: system:node:cp-1@kubernetes
current-context: system:node:cp-1@kubernetes
kind: Config
users:
- name: system:node:cp-1
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
";

    #[test]
    fn exec_plugins_and_tokens_are_not_certificates() {
        assert_eq!(
            client_auth(EKS),
            Ok(ClientAuth::NoCertificate(
                "the exec credential plugin /usr/bin/aws-iam-authenticator".into()
            ))
        );
        let token = KUBEADM.replace(
            "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
            "    tokenFile: /var/run/secrets/token\n",
        );
        assert_eq!(
            client_auth(&token),
            Ok(ClientAuth::NoCertificate("a bearer token file".into()))
        );
    }

    #[test]
    fn a_client_certificate_wins_over_other_credentials() {
        assert_eq!(client_auth(KUBEADM), Ok(ClientAuth::Certificate));
        let both = KUBEADM.replace("    client-key:", "    token: abc\n    client-key:");
        assert_eq!(client_auth(&both), Ok(ClientAuth::Certificate));
        let data = KUBEADM.replace(
            "client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem",
            "client-certificate-data: LS0tLS1CRUdJTg==",
        );
        assert_eq!(client_auth(&data), Ok(ClientAuth::Certificate));
    }

    #[test]
    fn the_current_context_decides_which_user_counts() {
        // A second user with a certificate that the current context does not use.
        let two = EKS.replace(
            "users:\n",
            "users:\n- name: admin\n  user:\n    client-certificate-data: LS0t\n",
        );
        assert!(matches!(
            client_auth(&two),
            Ok(ClientAuth::NoCertificate(_))
        ));
        let switched = two.replace("    user: kubelet\n", "    user: admin\n");
        assert_eq!(client_auth(&switched), Ok(ClientAuth::Certificate));
    }

    #[test]
    fn what_cannot_be_followed_exactly_is_an_error() {
        let cases = [
            (EKS.replace("current-context: kubelet\n", ""), "no current-context"),
            (
                EKS.replace("current-context: kubelet", "current-context: other"),
                "no entry named \"other\"",
            ),
            (
                EKS.replace("    user: kubelet\n", "    user: nobody\n"),
                "users has no entry named \"nobody\"",
            ),
            (
                format!("{EKS}- name: kubelet\n  user:\n    token: x\n"),
                "several entries named \"kubelet\"",
            ),
            (
                EKS.replace("current-context: kubelet", "current-context: [a]"),
                "not a string",
            ),
            (
                EKS.replace(
                    "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /usr/bin/aws-iam-authenticator\n      args:\n        - \"token\"\n        - \"-i\"\n        - \"my-cluster\"\n",
                    "    {}\n",
                ),
                "user \"kubelet\" has no credentials",
            ),
            (
                EKS.replace("      command: /usr/bin/aws-iam-authenticator\n", ""),
                "exec names no command",
            ),
            (
                EKS.replace(
                    "    exec:\n      apiVersion",
                    "    exec: aws-iam-authenticator\n    x:\n      apiVersion",
                ),
                "exec is a string, not an object",
            ),
            ("users: [\n".to_string(), "not valid YAML"),
            ("[]".to_string(), "not an object"),
            (
                EKS.replace("current-context: kubelet\n", "current-context: kubelet\ncurrent-context: kubelet\n"),
                "twice",
            ),
        ];
        for (text, want) in cases {
            let got = client_auth(&text);
            match got {
                Err(e) => assert!(e.contains(want), "{want:?} not in {e:?}"),
                Ok(a) => panic!("expected an error containing {want:?}, got {a:?}"),
            }
        }
        let none = KUBEADM.replace(
            "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
            "    client-key: /k.pem\n",
        );
        assert_eq!(
            client_auth(&none),
            Err("user \"system:node:cp-1\" has no credentials".to_string())
        );
    }
}
