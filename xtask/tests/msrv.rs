//! The workspace's declared `rust-version` holds for syntax too.
//!
//! Clippy checks library APIs against the declared version (`incompatible_msrv`, an error
//! under `-D warnings`), but not syntax: the one toolchain on the project's machines
//! accepts, in edition 2024, syntax newer than the declared version. This test parses
//! every Rust file of the workspace and fails on the syntax stabilised after it that
//! code like ours reaches for, naming the file, the line and the version it needs.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Syntax this test knows, with the Rust version that made it stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `if let A = a && b`, `while x && let B = b`: Rust 1.88.
    LetChain,
    /// `match x { A if let B = b => .. }`: unstable at 1.85, stable at 1.95 (the
    /// toolchain here); taken as 1.95, which may be later than it really is, never earlier.
    IfLetGuard,
    /// `#[cfg(true)]`, `cfg!(false)`: Rust 1.88.
    CfgBoolean,
}

impl Syntax {
    /// (major, minor) of the first stable Rust that accepts it.
    fn since(self) -> (u32, u32) {
        match self {
            Syntax::LetChain | Syntax::CfgBoolean => (1, 88),
            Syntax::IfLetGuard => (1, 95),
        }
    }
}

#[derive(Debug, Default)]
struct Finder {
    found: Vec<(Syntax, usize)>,
}

/// Whether `expr` is a chain of `&&` with a `let` in it, looking through parentheses-free
/// `&&` operands only (a `let` inside a closure or a block is not part of the chain).
fn is_let_chain(expr: &syn::Expr) -> bool {
    fn lets_in_chain(expr: &syn::Expr) -> bool {
        match expr {
            syn::Expr::Let(_) => true,
            syn::Expr::Binary(binary) if matches!(binary.op, syn::BinOp::And(_)) => {
                lets_in_chain(&binary.left) || lets_in_chain(&binary.right)
            }
            _ => false,
        }
    }
    matches!(expr, syn::Expr::Binary(binary) if matches!(binary.op, syn::BinOp::And(_)))
        && lets_in_chain(expr)
}

fn has_let(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Let(_) => true,
        syn::Expr::Binary(binary) if matches!(binary.op, syn::BinOp::And(_)) => {
            has_let(&binary.left) || has_let(&binary.right)
        }
        _ => false,
    }
}

fn line_of(spanned: &impl syn::spanned::Spanned) -> usize {
    spanned.span().start().line
}

impl Finder {
    fn cfg_tokens(&mut self, tokens: &proc_macro2::TokenStream) {
        for token in tokens.clone() {
            match token {
                proc_macro2::TokenTree::Ident(ident) if ident == "true" || ident == "false" => {
                    self.found
                        .push((Syntax::CfgBoolean, ident.span().start().line));
                }
                proc_macro2::TokenTree::Group(group) => self.cfg_tokens(&group.stream()),
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_expr_if(&mut self, node: &'ast syn::ExprIf) {
        if is_let_chain(&node.cond) {
            self.found.push((Syntax::LetChain, line_of(&node.cond)));
        }
        syn::visit::visit_expr_if(self, node);
    }

    fn visit_expr_while(&mut self, node: &'ast syn::ExprWhile) {
        if is_let_chain(&node.cond) {
            self.found.push((Syntax::LetChain, line_of(&node.cond)));
        }
        syn::visit::visit_expr_while(self, node);
    }

    fn visit_pat_guard(&mut self, node: &'ast syn::PatGuard) {
        if has_let(&node.guard) {
            self.found.push((Syntax::IfLetGuard, line_of(&node.guard)));
        }
        syn::visit::visit_pat_guard(self, node);
    }

    fn visit_attribute(&mut self, node: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &node.meta {
            if ["cfg", "cfg_attr"]
                .iter()
                .any(|name| list.path.is_ident(name))
            {
                self.cfg_tokens(&list.tokens);
            }
        }
        syn::visit::visit_attribute(self, node);
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        if node.path.is_ident("cfg") {
            self.cfg_tokens(&node.tokens);
        }
        syn::visit::visit_macro(self, node);
    }
}

/// The syntax in `source` that is newer than `declared`, as (syntax, line).
fn newer_syntax(source: &str, declared: (u32, u32)) -> syn::Result<Vec<(Syntax, usize)>> {
    let file = syn::parse_file(source)?;
    let mut finder = Finder::default();
    finder.visit_file(&file);
    finder.found.retain(|(syntax, _)| syntax.since() > declared);
    Ok(finder.found)
}

/// The workspace's `rust-version`, as (major, minor).
fn declared_rust_version() -> (u32, u32) {
    let manifest = std::fs::read_to_string(xtask::workspace_root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let version = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("[workspace.package] rust-version");
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_syntax_newer_than_the_declared_rust_version() {
    let declared = declared_rust_version();
    let root = xtask::workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display();
        match newer_syntax(&source, declared) {
            Ok(found) => {
                for (syntax, line) in found {
                    let (major, minor) = syntax.since();
                    problems.push(format!(
                        "{shown}:{line}: {syntax:?} needs Rust {major}.{minor}, \
                         the workspace declares {}.{}",
                        declared.0, declared.1
                    ));
                }
            }
            Err(error) => problems.push(format!("{shown}: cannot parse: {error}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn each_newer_syntax_is_found() {
    let at_1_85 = |source: &str| {
        newer_syntax(source, (1, 85))
            .unwrap()
            .into_iter()
            .map(|(syntax, _)| syntax)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at_1_85("fn f(a: Option<u8>, b: bool) { if let Some(x) = a && b { let _ = x; } }"),
        [Syntax::LetChain]
    );
    assert_eq!(
        at_1_85("fn f(a: Option<u8>, b: bool) { while b && let Some(_) = a {} }"),
        [Syntax::LetChain]
    );
    assert_eq!(
        at_1_85("fn f(a: Option<u8>) { match 1 { _ if let Some(_) = a => {} _ => {} } }"),
        [Syntax::IfLetGuard]
    );
    assert_eq!(
        at_1_85("#[cfg(any(true, unix))] fn f() -> bool { cfg!(false) }"),
        [Syntax::CfgBoolean, Syntax::CfgBoolean]
    );
    // What 1.85 has: a plain `if let`, `&&` with a `let` inside a closure or a block.
    assert_eq!(
        at_1_85(
            "fn f(a: Option<u8>, b: bool) {
                if let Some(_) = a {}
                if b && (|| matches!(a, Some(_)))() {}
                if b && { let c = a.is_some(); c } {}
                match a { Some(x) if x > 0 => {} _ => {} }
            }"
        ),
        []
    );
    // A newer declared version allows what it has.
    assert_eq!(
        newer_syntax(
            "fn f(a: Option<u8>, b: bool) { if let Some(_) = a && b {} }",
            (1, 88)
        )
        .unwrap(),
        []
    );
    // The line is the one the syntax is on.
    assert_eq!(
        newer_syntax(
            "fn f(a: Option<u8>, b: bool) {\n\n    if b && let Some(_) = a {}\n}",
            (1, 85)
        )
        .unwrap(),
        [(Syntax::LetChain, 3)]
    );
}

#[test]
fn no_dependency_declares_a_newer_rust_version() {
    // A crate in the lockfile that needs a newer compiler than ours declares would break
    // the build on the declared one although our own code is fine.
    let declared = declared_rust_version();
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(xtask::workspace_root().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    assert!(packages.len() > 50, "only {} packages", packages.len());
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|package| {
            let wanted = package["rust_version"].as_str()?;
            let mut parts = wanted
                .split('.')
                .map(|part| part.parse::<u32>().unwrap_or(0));
            let wanted_pair = (parts.next()?, parts.next().unwrap_or(0));
            (wanted_pair > declared).then(|| {
                format!(
                    "{} {} needs Rust {wanted}",
                    package["name"], package["version"]
                )
            })
        })
        .collect();
    assert!(
        newer.is_empty(),
        "the workspace declares Rust {}.{}, but:\n{}",
        declared.0,
        declared.1,
        newer.join("\n")
    );
}
