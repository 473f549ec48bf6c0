//! Rule conditions: a small expression language behind [`Language`], so the engine can be swapped.
//! The language is CEL (parsed by the `cel` crate, pinned to an exact version), restricted to what a
//! fraud rule needs and checked against the vocabulary of fields and features before anything runs:
//! integers, booleans and strings; `&&`, `||`, `!`, `? :`; comparisons; integer arithmetic; `in` a
//! list literal; `size`, `contains`, `startsWith`, `endsWith` on strings. No floating point (amounts
//! are integers of minor or whole major units), no macros, no regular expressions.
//!
//! Two engines run it. [`Compiled`] (the one in use) turns the checked syntax tree into typed nodes
//! evaluated directly over the bound values, with CEL's semantics for this subset: integer overflow
//! and division by zero are errors, and `&&`/`||` absorb an error when the other side decides
//! (`false && error` is false). [`Cel`] runs the same programs in the `cel` crate's interpreter; a
//! test checks both agree, and it is there to swap back to.

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

    fn scope_index(&self, scope: &str) -> Option<usize> {
        self.scopes.keys().position(|s| s == scope)
    }

    /// `values` in the order of the vocabulary's scopes.
    fn ordered(&self, values: &Values) -> Vec<Vec<Value>> {
        self.scopes
            .keys()
            .map(|scope| {
                values
                    .iter()
                    .find(|(s, _)| s == scope)
                    .map(|(_, v)| v.to_vec())
                    .unwrap_or_default()
            })
            .collect()
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

pub type Engine = Compiled;

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

/// Longest condition.
pub const CONDITION_BYTES_MAX: usize = 4096;
/// Most operators in a condition: each may add a level to its syntax tree, which the parser, the
/// checker and the evaluator walk recursively, so this bounds their depth.
pub const CONDITION_OPERATORS_MAX: usize = 256;
/// Deepest nesting of parentheses and brackets in a condition.
pub const CONDITION_NESTING_MAX: usize = 32;

impl Language for Cel {
    type Condition = cel::Program;
    type Bindings = cel::Context<'static, 'static>;

    fn compile(&self, source: &str, vocabulary: &Vocabulary) -> Result<cel::Program, CompileError> {
        parse_checked(&self.env, source, vocabulary).map(|(program, _)| program)
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

/// The engine in use: see the module documentation.
pub struct Compiled {
    env: Arc<cel::Env>,
}

impl Default for Compiled {
    fn default() -> Compiled {
        Compiled {
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

impl Language for Compiled {
    type Condition = Node;
    type Bindings = Vec<Vec<Value>>;

    fn compile(&self, source: &str, vocabulary: &Vocabulary) -> Result<Node, CompileError> {
        parse_checked(&self.env, source, vocabulary).map(|(_, node)| node)
    }

    fn bind(&self, vocabulary: &Vocabulary, values: &Values) -> Vec<Vec<Value>> {
        vocabulary.ordered(values)
    }

    fn evaluate(&self, condition: &Node, bindings: &Vec<Vec<Value>>) -> Result<bool, String> {
        match condition.eval(bindings)? {
            Value::Bool(hit) => Ok(hit),
            other => Err(format!("the condition gave {other}, not a bool")),
        }
    }
}

/// Parses `source` (on a thread with room for CEL's deeply recursive parser) and checks it against
/// `vocabulary`, compiling it to a [`Node`] on the way.
fn parse_checked(env: &cel::Env, source: &str, vocabulary: &Vocabulary) -> Result<(cel::Program, Node), CompileError> {
    within_bounds(source)?;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(COMPILE_STACK_BYTES)
            .spawn_scoped(scope, || check_parsed(env, source, vocabulary))
            .map_err(|e| parse_error(&e.to_string()))?
            .join()
            .map_err(|_| parse_error("the expression could not be parsed"))?
    })
}

/// The parse and check of [`parse_checked`], on its thread.
fn check_parsed(env: &cel::Env, source: &str, vocabulary: &Vocabulary) -> Result<(cel::Program, Node), CompileError> {
    let program = env.compile(source).map_err(|e| parse_error(&e.to_string()))?;
    let at = |id: u64| {
        let offset = program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        line_column(source, offset)
    };
    let checker = Checker { vocabulary };
    let (ty, node) = checker.check(program.expression()).map_err(|(id, message)| {
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
    Ok((program, node))
}

/// A checked condition, compiled.
#[derive(Clone, Debug)]
pub enum Node {
    Literal(Value),
    /// The value of a scope's name, by index.
    Field(usize, usize),
    Not(Box<Node>),
    Negate(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Arithmetic(Arithmetic, Box<Node>, Box<Node>),
    Compare(Compare, Box<Node>, Box<Node>),
    Conditional(Box<Node>, Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Node>),
    Size(Box<Node>),
    Text(Text, Box<Node>, Box<Node>),
}

#[derive(Clone, Copy, Debug)]
pub enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

#[derive(Clone, Copy, Debug)]
pub enum Compare {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Clone, Copy, Debug)]
pub enum Text {
    Contains,
    StartsWith,
    EndsWith,
}

impl Node {
    fn eval(&self, values: &[Vec<Value>]) -> Result<Value, String> {
        let int = |node: &Node| match node.eval(values)? {
            Value::Int(n) => Ok(n),
            other => Err(format!("expected an int, found {other}")),
        };
        let boolean = |node: &Node| match node.eval(values)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, found {other}")),
        };
        let text = |node: &Node| match node.eval(values)? {
            Value::String(s) => Ok(s),
            other => Err(format!("expected a string, found {other}")),
        };
        Ok(match self {
            Node::Literal(value) => value.clone(),
            Node::Field(scope, index) => values
                .get(*scope)
                .and_then(|v| v.get(*index))
                .cloned()
                .ok_or("a field without a value")?,
            Node::Not(a) => Value::Bool(!boolean(a)?),
            Node::Negate(a) => Value::Int(int(a)?.checked_neg().ok_or("integer overflow")?),
            // CEL's logic: a side that decides the outcome absorbs an error on the other side.
            Node::And(a, b) => match boolean(a) {
                Ok(false) => Value::Bool(false),
                left => match (left, boolean(b)) {
                    (Ok(false), _) | (_, Ok(false)) => Value::Bool(false),
                    (Ok(true), Ok(true)) => Value::Bool(true),
                    (Err(e), _) | (_, Err(e)) => return Err(e),
                },
            },
            Node::Or(a, b) => match boolean(a) {
                Ok(true) => Value::Bool(true),
                left => match (left, boolean(b)) {
                    (Ok(true), _) | (_, Ok(true)) => Value::Bool(true),
                    (Ok(false), Ok(false)) => Value::Bool(false),
                    (Err(e), _) | (_, Err(e)) => return Err(e),
                },
            },
            Node::Arithmetic(Arithmetic::Add, a, b) => match (a.eval(values)?, b.eval(values)?) {
                (Value::Int(x), Value::Int(y)) => Value::Int(x.checked_add(y).ok_or("integer overflow")?),
                (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}").into()),
                (x, y) => return Err(format!("cannot add {x} and {y}")),
            },
            Node::Arithmetic(op, a, b) => {
                let (x, y) = (int(a)?, int(b)?);
                let result = match op {
                    Arithmetic::Subtract => x.checked_sub(y),
                    Arithmetic::Multiply => x.checked_mul(y),
                    Arithmetic::Divide | Arithmetic::Modulo if y == 0 => return Err("division by zero".into()),
                    Arithmetic::Divide => x.checked_div(y),
                    Arithmetic::Modulo => x.checked_rem(y),
                    Arithmetic::Add => unreachable!("matched above"),
                };
                Value::Int(result.ok_or("integer overflow")?)
            }
            Node::Compare(op, a, b) => {
                let ordering = match (a.eval(values)?, b.eval(values)?) {
                    (Value::Int(x), Value::Int(y)) => x.cmp(&y),
                    (Value::String(x), Value::String(y)) => x.cmp(&y),
                    (Value::Bool(x), Value::Bool(y)) => x.cmp(&y),
                    (x, y) => return Err(format!("cannot compare {x} with {y}")),
                };
                Value::Bool(match op {
                    Compare::Equal => ordering.is_eq(),
                    Compare::NotEqual => ordering.is_ne(),
                    Compare::Less => ordering.is_lt(),
                    Compare::LessOrEqual => ordering.is_le(),
                    Compare::Greater => ordering.is_gt(),
                    Compare::GreaterOrEqual => ordering.is_ge(),
                })
            }
            Node::Conditional(condition, then, otherwise) => match boolean(condition)? {
                true => then.eval(values)?,
                false => otherwise.eval(values)?,
            },
            Node::In(item, list) => {
                let item = item.eval(values)?;
                let mut found = false;
                for element in list {
                    found |= element.eval(values)? == item;
                }
                Value::Bool(found)
            }
            Node::Size(a) => Value::Int(text(a)?.chars().count() as i64),
            Node::Text(op, a, b) => {
                let (x, y) = (text(a)?, text(b)?);
                Value::Bool(match op {
                    Text::Contains => x.contains(&*y),
                    Text::StartsWith => x.starts_with(&*y),
                    Text::EndsWith => x.ends_with(&*y),
                })
            }
        })
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

/// Refuses a condition larger, with more operators or nested deeper than the bounds above, before
/// it is parsed: counted in one pass over the text, outside string literals.
fn within_bounds(source: &str) -> Result<(), CompileError> {
    let refuse = |message: String| {
        Err(CompileError {
            line: 1,
            column: 1,
            message,
        })
    };
    if source.len() > CONDITION_BYTES_MAX {
        return refuse(format!(
            "the condition is longer than {CONDITION_BYTES_MAX} bytes, the most it may be"
        ));
    }
    let (mut operators, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous_operator = false;
    let mut word = String::new();
    for c in source.chars() {
        if let Some(open) = quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, c) if c == open => quote = None,
                _ => {}
            }
            continue;
        }
        // `in` is an operator too; so is `.` (each selection or method call is a level of the tree).
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            previous_operator = false;
            continue;
        }
        if word == "in" {
            operators += 1;
        }
        word.clear();
        let operator = "+-*/%!<>=&|?:,.".contains(c);
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        // A run of operator characters (`&&`, `<=`) is one operator.
        if operator && !previous_operator {
            operators += 1;
        }
        previous_operator = operator;
    }
    operators += usize::from(word == "in");
    if operators > CONDITION_OPERATORS_MAX {
        return refuse(format!(
            "the condition has more than {CONDITION_OPERATORS_MAX} operators, the most it may have"
        ));
    }
    if deepest > CONDITION_NESTING_MAX {
        return refuse(format!(
            "the condition nests deeper than {CONDITION_NESTING_MAX} levels of parentheses or brackets"
        ));
    }
    Ok(())
}

/// Walks a parsed condition and gives its type and compiled form, or the id of the first node that is
/// wrong.
struct Checker<'a> {
    vocabulary: &'a Vocabulary,
}

type Checked = Result<(Type, Node), (u64, String)>;

impl Checker<'_> {
    fn check(&self, node: &IdedExpr) -> Checked {
        let fail = |message: String| Err((node.id, message));
        match &node.expr {
            Expr::Literal(literal) => match literal {
                LiteralValue::Int(n) => Ok((Type::Int, Node::Literal(Value::Int(*n.inner())))),
                LiteralValue::Boolean(b) => Ok((Type::Bool, Node::Literal(Value::Bool(*b.inner())))),
                LiteralValue::String(text) => Ok((Type::String, Node::Literal(Value::String(text.inner().into())))),
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
                match (
                    self.vocabulary.get(scope, &select.field),
                    self.vocabulary.scope_index(scope),
                ) {
                    (Some((index, ty)), Some(scope)) => Ok((ty, Node::Field(scope, index))),
                    (_, Some(_)) => {
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
                    (_, None) => Err((select.operand.id, format!("unknown name `{scope}`; {}", self.known()))),
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

    fn expect(&self, node: &IdedExpr, want: Type) -> Result<Node, (u64, String)> {
        let (got, compiled) = self.check(node)?;
        if got == want {
            Ok(compiled)
        } else {
            Err((node.id, format!("expected {}, found {}", want.name(), got.name())))
        }
    }

    /// Both sides, of one type.
    fn same(&self, a: &IdedExpr, b: &IdedExpr) -> Result<(Type, Node, Node), (u64, String)> {
        let (left, x) = self.check(a)?;
        let (right, y) = self.check(b)?;
        if left == right {
            Ok((left, x, y))
        } else {
            Err((b.id, format!("cannot compare {} with {}", left.name(), right.name())))
        }
    }

    fn call(&self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Checked {
        use cel::common::ast::operators as op;
        let fail = |message: String| Err((id, message));
        let boxed = |node: Node| Box::new(node);
        match (name, target, args) {
            (op::LOGICAL_AND | op::LOGICAL_OR, None, [a, b]) => {
                let (x, y) = (boxed(self.expect(a, Type::Bool)?), boxed(self.expect(b, Type::Bool)?));
                let node = if name == op::LOGICAL_AND {
                    Node::And(x, y)
                } else {
                    Node::Or(x, y)
                };
                Ok((Type::Bool, node))
            }
            (op::LOGICAL_NOT, None, [a]) => Ok((Type::Bool, Node::Not(boxed(self.expect(a, Type::Bool)?)))),
            (op::NEGATE, None, [a]) => Ok((Type::Int, Node::Negate(boxed(self.expect(a, Type::Int)?)))),
            (op::ADD, None, [a, b]) => match self.same(a, b)? {
                (Type::Bool, ..) => fail("`+` adds integers or joins strings".into()),
                (ty, x, y) => Ok((ty, Node::Arithmetic(Arithmetic::Add, boxed(x), boxed(y)))),
            },
            (op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO, None, [a, b]) => {
                let operation = match name {
                    op::SUBSTRACT => Arithmetic::Subtract,
                    op::MULTIPLY => Arithmetic::Multiply,
                    op::DIVIDE => Arithmetic::Divide,
                    _ => Arithmetic::Modulo,
                };
                let (x, y) = (self.expect(a, Type::Int)?, self.expect(b, Type::Int)?);
                Ok((Type::Int, Node::Arithmetic(operation, boxed(x), boxed(y))))
            }
            (
                op::EQUALS | op::NOT_EQUALS | op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS,
                None,
                [a, b],
            ) => {
                let (ty, x, y) = self.same(a, b)?;
                let comparison = match name {
                    op::EQUALS => Compare::Equal,
                    op::NOT_EQUALS => Compare::NotEqual,
                    _ if ty == Type::Bool => return fail("booleans are not ordered".into()),
                    op::LESS => Compare::Less,
                    op::LESS_EQUALS => Compare::LessOrEqual,
                    op::GREATER => Compare::Greater,
                    _ => Compare::GreaterOrEqual,
                };
                Ok((Type::Bool, Node::Compare(comparison, boxed(x), boxed(y))))
            }
            (op::CONDITIONAL, None, [condition, then, otherwise]) => {
                let condition = self.expect(condition, Type::Bool)?;
                let (ty, x, y) = self.same(then, otherwise)?;
                Ok((ty, Node::Conditional(boxed(condition), boxed(x), boxed(y))))
            }
            (op::IN, None, [item, list]) => {
                let (ty, item) = self.check(item)?;
                let Expr::List(list) = &list.expr else {
                    return Err((list.id, "`in` takes a list literal, e.g. `x in [\"a\", \"b\"]`".into()));
                };
                let elements = list
                    .elements
                    .iter()
                    .map(|element| self.expect(element, ty))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((Type::Bool, Node::In(boxed(item), elements)))
            }
            ("size", None, [text]) | ("size", Some(text), []) => {
                Ok((Type::Int, Node::Size(boxed(self.expect(text, Type::String)?))))
            }
            ("contains" | "startsWith" | "endsWith", Some(text), [part]) => {
                let operation = match name {
                    "contains" => Text::Contains,
                    "startsWith" => Text::StartsWith,
                    _ => Text::EndsWith,
                };
                let (x, y) = (self.expect(text, Type::String)?, self.expect(part, Type::String)?);
                Ok((Type::Bool, Node::Text(operation, boxed(x), boxed(y))))
            }
            _ => fail(format!(
                "`{}` is not available in rule conditions",
                name.trim_matches('_').replace("_", " ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn vocabulary() -> Vocabulary {
        let mut vocabulary = Vocabulary::default();
        for (name, ty) in [
            ("a", Type::Int),
            ("b", Type::Int),
            ("s", Type::String),
            ("u", Type::String),
            ("p", Type::Bool),
        ] {
            vocabulary.declare("t", name, ty);
        }
        vocabulary.declare("f", "n", Type::Int);
        vocabulary
    }

    #[test]
    fn conditions_beyond_their_bounds_are_refused_before_they_are_parsed() {
        let engine = Compiled::default();
        let compile = |source: &str| engine.compile(source, &vocabulary()).map(drop).map_err(|e| e.message);
        // A few hundred kilobytes of `1+1+...`: once a stack overflow that aborted the process.
        let huge = format!("{}1 > 0", "1+".repeat(100_000));
        assert!(compile(&huge).unwrap_err().contains("longer than 4096 bytes"));
        let long_chain = format!("{}1 > 0", "1+".repeat(CONDITION_OPERATORS_MAX));
        assert!(compile(&long_chain).unwrap_err().contains("more than 256 operators"));
        let in_chain = format!("t.p{}", " in [true]".repeat(CONDITION_OPERATORS_MAX));
        assert!(compile(&in_chain).unwrap_err().contains("operators"));
        let deep = format!(
            "{}t.p{}",
            "(".repeat(CONDITION_NESTING_MAX + 1),
            ")".repeat(CONDITION_NESTING_MAX + 1)
        );
        assert!(compile(&deep).unwrap_err().contains("nests deeper than 32"));
        // Operators inside string literals count for nothing.
        let quoted = format!("t.s == \"{}\"", "+".repeat(1000));
        assert_eq!(compile(&quoted), Ok(()));
        // The largest chain allowed checks, evaluates and is dropped on a thread with the stack of an
        // async worker (2 MiB).
        let allowed = format!("{}1 > 0", "1+".repeat(CONDITION_OPERATORS_MAX - 2));
        let checked = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let engine = Compiled::default();
                let vocabulary = vocabulary();
                let node = engine.compile(&allowed, &vocabulary).unwrap();
                engine.evaluate(&node, &engine.bind(&vocabulary, &[]))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(checked, Ok(true));
    }

    const CONDITIONS: &[&str] = &[
        "t.a > t.b",
        "t.a + t.b >= 0",
        "t.a - t.b < 10",
        "t.a * t.b == 0",
        "t.a / t.b > 1",
        "t.a % t.b != 0",
        "-t.a < f.n",
        "t.p && t.a / t.b > 0",
        "t.a / t.b > 0 && t.p",
        "t.p || t.a / t.b > 0",
        "t.a / t.b > 0 || t.p",
        "!t.p",
        "(t.p ? t.a : t.b) > 3",
        "t.s in [\"ab\", \"é\", \"\"]",
        "t.a in [1, 2, 3, -1]",
        "size(t.s) > 1",
        "t.s.size() == size(t.u)",
        "t.s.contains(t.u)",
        "t.s.startsWith(t.u) || t.s.endsWith(\"b\")",
        "t.s + t.u == \"abé\"",
        "t.s < t.u",
        "t.p == (t.a == t.b)",
        "t.a * 9223372036854775807 > 0",
    ];

    fn value(random: &mut rand::rngs::StdRng, ty: Type) -> Value {
        const INTS: [i64; 8] = [0, 1, -1, 2, 3, 10, i64::MAX, i64::MIN];
        const TEXTS: [&str; 6] = ["", "a", "ab", "é", "abé", "b"];
        match ty {
            Type::Int if random.random_bool(0.5) => Value::Int(INTS[random.random_range(0..INTS.len())]),
            Type::Int => Value::Int(random.random_range(-20..20)),
            Type::Bool => Value::Bool(random.random_bool(0.5)),
            Type::String => Value::String(TEXTS[random.random_range(0..TEXTS.len())].into()),
        }
    }

    /// The compiled engine gives what the cel crate's interpreter gives: the same outcome, or an error
    /// from both.
    #[test]
    fn the_compiled_engine_agrees_with_the_cel_interpreter() {
        let vocabulary = vocabulary();
        let (compiled, interpreter) = (Compiled::default(), Cel::default());
        let mut random = rand::rngs::StdRng::seed_from_u64(1);
        let mut errors = 0;
        for condition in CONDITIONS {
            let fast = compiled.compile(condition, &vocabulary).unwrap();
            let reference = interpreter.compile(condition, &vocabulary).unwrap();
            for _ in 0..400 {
                let t: Vec<Value> = vocabulary.scopes["t"]
                    .iter()
                    .map(|(_, ty)| value(&mut random, *ty))
                    .collect();
                let f = vec![value(&mut random, Type::Int)];
                let values: [(&str, &[Value]); 2] = [("t", &t), ("f", &f)];
                let got = compiled.evaluate(&fast, &compiled.bind(&vocabulary, &values));
                let want = interpreter.evaluate(&reference, &interpreter.bind(&vocabulary, &values));
                match (&got, &want) {
                    (Ok(x), Ok(y)) => assert_eq!(x, y, "{condition} with {t:?} {f:?}"),
                    (Err(_), Err(_)) => errors += 1,
                    _ => panic!("{condition} with {t:?} {f:?}: compiled {got:?}, cel {want:?}"),
                }
            }
        }
        assert!(errors > 0, "the cases include overflow and division by zero");
    }
}
