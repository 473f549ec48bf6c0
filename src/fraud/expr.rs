//! Rule conditions: a small expression language behind [`Language`], so the engine can be swapped.
//! The one in use is CEL (the `cel` crate, pinned to an exact version), restricted to what a fraud
//! rule needs and checked against the vocabulary of fields and features before anything runs:
//! integers, booleans and strings; `&&`, `||`, `!`, `? :`; comparisons; integer arithmetic; `in` a
//! list literal; `size`, `contains`, `startsWith`, `endsWith` on strings. No floating point (amounts
//! are integers of minor or whole major units), no macros, no regular expressions.

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr, LiteralValue};

/// The types a condition works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Bool,
    String,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Bool => "bool",
            Type::String => "string",
        }
    }
}

/// A value of a field or feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(Arc<str>),
}

impl Value {
    pub fn type_of(&self) -> Type {
        match self {
            Value::Int(_) => Type::Int,
            Value::Bool(_) => Type::Bool,
            Value::String(_) => Type::String,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::String(s) => write!(f, "{s}"),
        }
    }
}

/// What conditions may name: `<scope>.<name>` (e.g. `transfer.amount_minor`, `f.debit_count_1h`),
/// each with its type. Values are given in the same order as the names are declared.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    scopes: BTreeMap<String, Vec<(String, Type)>>,
}

impl Vocabulary {
    pub fn declare(&mut self, scope: &str, name: &str, ty: Type) {
        self.scopes
            .entry(scope.to_string())
            .or_default()
            .push((name.to_string(), ty));
    }

    pub fn get(&self, scope: &str, name: &str) -> Option<(usize, Type)> {
        self.scopes
            .get(scope)?
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.scopes[scope][i].1))
    }

    pub fn scopes(&self) -> impl Iterator<Item = (&str, &[(String, Type)])> {
        self.scopes
            .iter()
            .map(|(scope, names)| (scope.as_str(), names.as_slice()))
    }
}

/// The values of one evaluation, per scope, in the vocabulary's order.
pub type Values<'a> = [(&'a str, &'a [Value])];

/// A refusal to compile, at a 1-based line and column of the condition's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// An expression language for conditions: compile (and check) once, bind one transfer's values, then
/// evaluate every rule's condition against them. [`Engine`] names the one in use.
pub trait Language: Send + Sync {
    type Condition: Send + Sync;
    type Bindings;
    fn compile(&self, source: &str, vocabulary: &Vocabulary) -> Result<Self::Condition, CompileError>;
    fn bind(&self, vocabulary: &Vocabulary, values: &Values) -> Self::Bindings;
    /// True when the rule hits; an error (overflow, division by zero) is the rule's error outcome.
    fn evaluate(&self, condition: &Self::Condition, bindings: &Self::Bindings) -> Result<bool, String>;
}

pub type Engine = Cel;

/// CEL, as described in the module documentation.
pub struct Cel {
    env: Arc<cel::Env>,
}

impl Default for Cel {
    fn default() -> Cel {
        Cel {
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

/// CEL's parser recurses deeply; compile on a thread with room for it.
const COMPILE_STACK_BYTES: usize = 32 << 20;

impl Language for Cel {
    type Condition = cel::Program;
    type Bindings = cel::Context<'static, 'static>;

    fn compile(&self, source: &str, vocabulary: &Vocabulary) -> Result<cel::Program, CompileError> {
        let text = source.to_string();
        let env = self.env.clone();
        let parsed = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(scope, move || env.compile(&text).map_err(|e| e.to_string()))
                .map_err(|e| e.to_string())?
                .join()
                .map_err(|_| "the expression could not be parsed".to_string())?
        });
        let program = parsed.map_err(|message| parse_error(&message))?;
        let at = |id: u64| {
            let offset = program
                .source_info()
                .offset_for(id)
                .map_or(0, |(start, _)| start as usize);
            line_column(source, offset)
        };
        let checker = Checker { vocabulary };
        let ty = checker.check(program.expression()).map_err(|(id, message)| {
            let (line, column) = at(id);
            CompileError { line, column, message }
        })?;
        if ty != Type::Bool {
            return Err(CompileError {
                line: 1,
                column: 1,
                message: format!("a condition must be a bool, this is an {}", ty.name()),
            });
        }
        Ok(program)
    }

    fn bind(&self, vocabulary: &Vocabulary, values: &Values) -> cel::Context<'static, 'static> {
        let mut context = cel::Context::with_env(self.env.clone());
        for (scope, values) in values {
            let names = vocabulary.scopes.get(*scope).map(Vec::as_slice).unwrap_or_default();
            let map: std::collections::HashMap<cel::objects::Key, cel::Value> = names
                .iter()
                .zip(values.iter())
                .map(|((name, _), value)| {
                    let value = match value {
                        Value::Int(n) => cel::Value::Int(*n),
                        Value::Bool(b) => cel::Value::Bool(*b),
                        Value::String(s) => cel::Value::String(Arc::new(s.to_string())),
                    };
                    (cel::objects::Key::String(Arc::new(name.clone())), value)
                })
                .collect();
            context.add_variable_from_value(*scope, cel::Value::Map(cel::objects::Map { map: Arc::new(map) }));
        }
        context
    }

    fn evaluate(&self, condition: &cel::Program, bindings: &cel::Context<'static, 'static>) -> Result<bool, String> {
        match condition.execute(bindings).map_err(|e| e.to_string())? {
            cel::Value::Bool(hit) => Ok(hit),
            other => Err(format!("the condition gave {other:?}, not a bool")),
        }
    }
}

/// Turns cel's "ERROR: <input>:L:C: message" (with a snippet) into a located error.
fn parse_error(text: &str) -> CompileError {
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("ERROR: <input>:").unwrap_or(first);
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|l| l.trim().parse::<usize>().ok());
    let column = parts.next().and_then(|c| c.trim().parse::<usize>().ok());
    match (line, column, parts.next()) {
        (Some(line), Some(column), Some(message)) => CompileError {
            line: line.max(1),
            column: column + 1,
            message: message.trim().to_string(),
        },
        _ => CompileError {
            line: 1,
            column: 1,
            message: first.to_string(),
        },
    }
}

/// 1-based line and column of a character offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Walks a parsed condition and gives its type, or the id of the first node that is wrong.
struct Checker<'a> {
    vocabulary: &'a Vocabulary,
}

type Checked = Result<Type, (u64, String)>;

impl Checker<'_> {
    fn check(&self, node: &IdedExpr) -> Checked {
        let fail = |message: String| Err((node.id, message));
        match &node.expr {
            Expr::Literal(literal) => match literal {
                LiteralValue::Int(_) => Ok(Type::Int),
                LiteralValue::Boolean(_) => Ok(Type::Bool),
                LiteralValue::String(_) => Ok(Type::String),
                LiteralValue::Double(_) => fail("no floating point: use integers (minor or whole major units)".into()),
                LiteralValue::UInt(_) => fail("no unsigned integers: write the number without `u`".into()),
                LiteralValue::Null | LiteralValue::Bytes(_) => fail("only integers, booleans and strings".into()),
            },
            Expr::Ident(name) => match self.vocabulary.scopes.contains_key(name.as_str()) {
                true => fail(format!(
                    "`{name}` alone is not a value: name one of its fields, `{name}.<name>`"
                )),
                false => fail(format!("unknown name `{name}`; {}", self.known())),
            },
            Expr::Select(select) => {
                let Expr::Ident(scope) = &select.operand.expr else {
                    return fail("only `<scope>.<name>` is selectable".into());
                };
                if select.test {
                    return fail("`has()` is not available: every field and feature always has a value".into());
                }
                match self.vocabulary.get(scope, &select.field) {
                    Some((_, ty)) => Ok(ty),
                    None if self.vocabulary.scopes.contains_key(scope.as_str()) => {
                        let names: Vec<&str> = self.vocabulary.scopes[scope.as_str()]
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect();
                        fail(format!(
                            "`{scope}` has no `{}`; it has: {}",
                            select.field,
                            names.join(", ")
                        ))
                    }
                    None => Err((select.operand.id, format!("unknown name `{scope}`; {}", self.known()))),
                }
            }
            Expr::Call(call) => self.call(node.id, &call.func_name, call.target.as_deref(), &call.args),
            Expr::List(_) => fail("a list is only allowed after `in`".into()),
            Expr::Comprehension(_) | Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => {
                fail("macros, maps and messages are not available in rule conditions".into())
            }
        }
    }

    fn known(&self) -> String {
        let scopes: Vec<&str> = self.vocabulary.scopes.keys().map(String::as_str).collect();
        format!("conditions name {}", scopes.join(" and "))
    }

    fn call(&self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Checked {
        use cel::common::ast::operators as op;
        let fail = |message: String| Err((id, message));
        let expect = |node: &IdedExpr, want: Type| -> Checked {
            let got = self.check(node)?;
            if got == want {
                Ok(got)
            } else {
                Err((node.id, format!("expected {}, found {}", want.name(), got.name())))
            }
        };
        let same = |a: &IdedExpr, b: &IdedExpr| -> Checked {
            let left = self.check(a)?;
            let right = self.check(b)?;
            if left == right {
                Ok(left)
            } else {
                Err((b.id, format!("cannot compare {} with {}", left.name(), right.name())))
            }
        };
        match (name, target, args) {
            (op::LOGICAL_AND | op::LOGICAL_OR, None, [a, b]) => {
                expect(a, Type::Bool)?;
                expect(b, Type::Bool)
            }
            (op::LOGICAL_NOT, None, [a]) => expect(a, Type::Bool),
            (op::NEGATE, None, [a]) => expect(a, Type::Int),
            (op::ADD, None, [a, b]) => match same(a, b)? {
                Type::Bool => fail("`+` adds integers or joins strings".into()),
                ty => Ok(ty),
            },
            (op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO, None, [a, b]) => {
                expect(a, Type::Int)?;
                expect(b, Type::Int)
            }
            (op::EQUALS | op::NOT_EQUALS, None, [a, b]) => same(a, b).map(|_| Type::Bool),
            (op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, None, [a, b]) => match same(a, b)? {
                Type::Bool => fail("booleans are not ordered".into()),
                _ => Ok(Type::Bool),
            },
            (op::CONDITIONAL, None, [condition, then, otherwise]) => {
                expect(condition, Type::Bool)?;
                same(then, otherwise)
            }
            (op::IN, None, [item, list]) => {
                let ty = self.check(item)?;
                let Expr::List(list) = &list.expr else {
                    return Err((list.id, "`in` takes a list literal, e.g. `x in [\"a\", \"b\"]`".into()));
                };
                for element in &list.elements {
                    expect(element, ty)?;
                }
                Ok(Type::Bool)
            }
            ("size", None, [text]) | ("size", Some(text), []) => expect(text, Type::String).map(|_| Type::Int),
            ("contains" | "startsWith" | "endsWith", Some(text), [part]) => {
                expect(text, Type::String)?;
                expect(part, Type::String).map(|_| Type::Bool)
            }
            _ => fail(format!(
                "`{}` is not available in rule conditions",
                name.trim_matches('_').replace("_", " ")
            )),
        }
    }
}
