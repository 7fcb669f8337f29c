//! A parser for the small subset of CQL the test node understands: the store's
//! statements, the schema DDL of `schema.cql` (and the `ALTER TABLE … ADD` that
//! migrates an older table), and the system-table queries the driver and the
//! store send.
//!
//! Anything outside the subset is a syntax error, like a statement Cassandra
//! cannot parse, so a store that starts sending new CQL fails its tests instead
//! of being silently misread. Bind markers (`?`) are numbered in text order,
//! which is how the protocol binds values.

use super::types::CqlType;

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select {
        table: TableName,
        /// `None` for `SELECT *`.
        columns: Option<Vec<String>>,
        filters: Vec<Filter>,
    },
    Insert {
        table: TableName,
        columns: Vec<String>,
        values: Vec<Term>,
        timestamp: Option<Term>,
        /// `USING TTL`: seconds the written cells live (0: forever).
        ttl: Option<Term>,
    },
    Delete {
        table: TableName,
        timestamp: Option<Term>,
        filters: Vec<Filter>,
    },
    CreateKeyspace {
        name: String,
        if_not_exists: bool,
        replication: Vec<(String, String)>,
    },
    CreateTable {
        table: TableName,
        if_not_exists: bool,
        columns: Vec<(String, CqlType)>,
        partition_key: Vec<String>,
        clustering_key: Vec<String>,
    },
    /// `ALTER TABLE … ADD name type` or `ADD (name type, …)`.
    AlterTableAdd {
        table: TableName,
        columns: Vec<(String, CqlType)>,
    },
    Use(String),
}

/// `[keyspace.]table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub keyspace: Option<String>,
    pub name: String,
}

/// A restriction of a `WHERE` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub relation: Relation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    Eq(Term),
    /// `IN ?` (one marker for the whole list) or `IN (a, b, …)`.
    In(InValues),
}

#[derive(Debug, Clone, PartialEq)]
pub enum InValues {
    Marker(usize),
    Terms(Vec<Term>),
}

/// A value in a statement: a bind marker or a literal (typed against its
/// column when the statement runs, as Cassandra does).
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Marker(usize),
    /// `'text'`.
    Str(String),
    /// `42`, `-7`, `1.5`, as written.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
}

impl Statement {
    /// Whether this statement writes data (what a failing node times out).
    pub fn is_write(&self) -> bool {
        matches!(self, Statement::Insert { .. } | Statement::Delete { .. })
    }
}

/// Parses one statement (an optional trailing `;` is allowed).
pub fn parse(text: &str) -> Result<Statement, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        markers: 0,
    };
    let statement = parser.statement()?;
    parser.eat_symbol(';');
    if let Some(token) = parser.peek() {
        return Err(format!(
            "unexpected {token:?} after the end of the statement"
        ));
    }
    Ok(statement)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted identifier or keyword, lower-cased (CQL folds them).
    Word(String),
    /// A `"quoted"` identifier, case kept.
    Quoted(String),
    Str(String),
    Number(String),
    Marker,
    Symbol(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Word(
                chars[start..i]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase(),
            ));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            // Both quote kinds escape themselves by doubling.
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated {c}quoted{c} text")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        value.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(if c == '\'' {
                Token::Str(value)
            } else {
                Token::Quoted(value)
            });
        } else if c == '?' {
            tokens.push(Token::Marker);
            i += 1;
        } else if "(),;=.{}:<>*".contains(c) {
            tokens.push(Token::Symbol(c));
            i += 1;
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Bind markers seen so far; the next one gets this index.
    markers: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == keyword)
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), String> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(format!(
                "expected {} but found {:?}",
                keyword.to_uppercase(),
                self.peek()
            ))
        }
    }

    fn eat_symbol(&mut self, symbol: char) -> bool {
        let found = self.peek() == Some(&Token::Symbol(symbol));
        if found {
            self.pos += 1;
        }
        found
    }

    fn symbol(&mut self, symbol: char) -> Result<(), String> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(format!("expected '{symbol}' but found {:?}", self.peek()))
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => Ok(w),
            other => Err(format!("expected an identifier but found {other:?}")),
        }
    }

    fn table_name(&mut self) -> Result<TableName, String> {
        let first = self.identifier()?;
        if self.eat_symbol('.') {
            Ok(TableName {
                keyspace: Some(first),
                name: self.identifier()?,
            })
        } else {
            Ok(TableName {
                keyspace: None,
                name: first,
            })
        }
    }

    fn term(&mut self) -> Result<Term, String> {
        match self.next() {
            Some(Token::Marker) => {
                self.markers += 1;
                Ok(Term::Marker(self.markers - 1))
            }
            Some(Token::Str(s)) => Ok(Term::Str(s)),
            Some(Token::Number(n)) => Ok(Term::Number(n)),
            Some(Token::Word(w)) if w == "true" || w == "false" => Ok(Term::Bool(w == "true")),
            other => Err(format!("expected a value but found {other:?}")),
        }
    }

    fn statement(&mut self) -> Result<Statement, String> {
        match self.next() {
            Some(Token::Word(w)) => match w.as_str() {
                "select" => self.select(),
                "insert" => self.insert(),
                "delete" => self.delete(),
                "create" => self.create(),
                "alter" => self.alter(),
                "use" => Ok(Statement::Use(self.identifier()?)),
                other => Err(format!(
                    "statement {} is not supported by the test node",
                    other.to_uppercase()
                )),
            },
            other => Err(format!("expected a statement but found {other:?}")),
        }
    }

    fn select(&mut self) -> Result<Statement, String> {
        let columns = if self.eat_symbol('*') {
            None
        } else {
            let mut columns = vec![self.identifier()?];
            while self.eat_symbol(',') {
                columns.push(self.identifier()?);
            }
            Some(columns)
        };
        self.keyword("from")?;
        let table = self.table_name()?;
        let filters = if self.eat_keyword("where") {
            self.filters()?
        } else {
            Vec::new()
        };
        if self.eat_keyword("allow") {
            self.keyword("filtering")?;
        }
        Ok(Statement::Select {
            table,
            columns,
            filters,
        })
    }

    fn filters(&mut self) -> Result<Vec<Filter>, String> {
        let mut filters = vec![self.filter()?];
        while self.eat_keyword("and") {
            filters.push(self.filter()?);
        }
        Ok(filters)
    }

    fn filter(&mut self) -> Result<Filter, String> {
        let column = self.identifier()?;
        let relation = if self.eat_symbol('=') {
            Relation::Eq(self.term()?)
        } else if self.eat_keyword("in") {
            if self.eat_symbol('(') {
                let mut terms = vec![self.term()?];
                while self.eat_symbol(',') {
                    terms.push(self.term()?);
                }
                self.symbol(')')?;
                Relation::In(InValues::Terms(terms))
            } else {
                match self.term()? {
                    Term::Marker(index) => Relation::In(InValues::Marker(index)),
                    other => return Err(format!("expected '(' or '?' after IN, found {other:?}")),
                }
            }
        } else {
            return Err(format!(
                "only = and IN restrictions are supported, found {:?}",
                self.peek()
            ));
        };
        Ok(Filter { column, relation })
    }

    /// `USING TIMESTAMP t [AND TTL s]`, in either order, each optional.
    fn using_timestamp_and_ttl(&mut self) -> Result<(Option<Term>, Option<Term>), String> {
        let (mut timestamp, mut ttl) = (None, None);
        if !self.eat_keyword("using") {
            return Ok((None, None));
        }
        loop {
            if self.eat_keyword("timestamp") && timestamp.is_none() {
                timestamp = Some(self.term()?);
            } else if self.eat_keyword("ttl") && ttl.is_none() {
                ttl = Some(self.term()?);
            } else {
                return Err(format!(
                    "expected TIMESTAMP or TTL, found {:?}",
                    self.peek()
                ));
            }
            if !self.eat_keyword("and") {
                return Ok((timestamp, ttl));
            }
        }
    }

    fn using_timestamp(&mut self) -> Result<Option<Term>, String> {
        if !self.eat_keyword("using") {
            return Ok(None);
        }
        self.keyword("timestamp")?;
        Ok(Some(self.term()?))
    }

    fn insert(&mut self) -> Result<Statement, String> {
        self.keyword("into")?;
        let table = self.table_name()?;
        self.symbol('(')?;
        let mut columns = vec![self.identifier()?];
        while self.eat_symbol(',') {
            columns.push(self.identifier()?);
        }
        self.symbol(')')?;
        self.keyword("values")?;
        self.symbol('(')?;
        let mut values = vec![self.term()?];
        while self.eat_symbol(',') {
            values.push(self.term()?);
        }
        self.symbol(')')?;
        if columns.len() != values.len() {
            return Err(format!(
                "{} columns but {} values",
                columns.len(),
                values.len()
            ));
        }
        let (timestamp, ttl) = self.using_timestamp_and_ttl()?;
        Ok(Statement::Insert {
            table,
            columns,
            values,
            timestamp,
            ttl,
        })
    }

    fn delete(&mut self) -> Result<Statement, String> {
        if !self.is_keyword("from") {
            return Err("the test node deletes whole rows only (DELETE FROM …)".into());
        }
        self.keyword("from")?;
        let table = self.table_name()?;
        let timestamp = self.using_timestamp()?;
        self.keyword("where")?;
        let filters = self.filters()?;
        Ok(Statement::Delete {
            table,
            timestamp,
            filters,
        })
    }

    fn if_not_exists(&mut self) -> Result<bool, String> {
        if self.eat_keyword("if") {
            self.keyword("not")?;
            self.keyword("exists")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn create(&mut self) -> Result<Statement, String> {
        if self.eat_keyword("keyspace") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.identifier()?;
            self.keyword("with")?;
            self.keyword("replication")?;
            self.symbol('=')?;
            let replication = self.string_map()?;
            if self.eat_keyword("and") {
                self.keyword("durable_writes")?;
                self.symbol('=')?;
                self.term()?;
            }
            Ok(Statement::CreateKeyspace {
                name,
                if_not_exists,
                replication,
            })
        } else if self.eat_keyword("table") {
            self.create_table()
        } else {
            Err(format!(
                "CREATE {:?} is not supported by the test node",
                self.peek()
            ))
        }
    }

    fn alter(&mut self) -> Result<Statement, String> {
        self.keyword("table")?;
        let table = self.table_name()?;
        self.keyword("add")?;
        let mut columns = Vec::new();
        if self.eat_symbol('(') {
            loop {
                columns.push((self.identifier()?, self.column_type()?));
                if self.eat_symbol(')') {
                    break;
                }
                self.symbol(',')?;
            }
        } else {
            columns.push((self.identifier()?, self.column_type()?));
        }
        Ok(Statement::AlterTableAdd { table, columns })
    }

    fn string_map(&mut self) -> Result<Vec<(String, String)>, String> {
        self.symbol('{')?;
        let mut entries = Vec::new();
        if !self.eat_symbol('}') {
            loop {
                let key = self.literal_text()?;
                self.symbol(':')?;
                let value = self.literal_text()?;
                entries.push((key, value));
                if self.eat_symbol('}') {
                    break;
                }
                self.symbol(',')?;
            }
        }
        Ok(entries)
    }

    fn literal_text(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Str(s) | Token::Number(s)) => Ok(s),
            other => Err(format!("expected a string or number but found {other:?}")),
        }
    }

    fn create_table(&mut self) -> Result<Statement, String> {
        let if_not_exists = self.if_not_exists()?;
        let table = self.table_name()?;
        self.symbol('(')?;
        let mut columns = Vec::new();
        let mut primary_key = None;
        loop {
            if self.eat_keyword("primary") {
                self.keyword("key")?;
                primary_key = Some(self.primary_key()?);
            } else {
                let name = self.identifier()?;
                let ty = self.column_type()?;
                if self.eat_keyword("primary") {
                    self.keyword("key")?;
                    primary_key = Some((vec![name.clone()], Vec::new()));
                }
                columns.push((name, ty));
            }
            if self.eat_symbol(')') {
                break;
            }
            self.symbol(',')?;
        }
        let (partition_key, clustering_key) = primary_key.ok_or("a table needs a PRIMARY KEY")?;
        // Table options (WITH …) do not change what the node stores.
        if self.eat_keyword("with") {
            while self.peek().is_some() && self.peek() != Some(&Token::Symbol(';')) {
                self.pos += 1;
            }
        }
        Ok(Statement::CreateTable {
            table,
            if_not_exists,
            columns,
            partition_key,
            clustering_key,
        })
    }

    /// `((a, b), c, d)` or `(a, c, d)`.
    fn primary_key(&mut self) -> Result<(Vec<String>, Vec<String>), String> {
        self.symbol('(')?;
        let partition = if self.eat_symbol('(') {
            let mut names = vec![self.identifier()?];
            while self.eat_symbol(',') {
                names.push(self.identifier()?);
            }
            self.symbol(')')?;
            names
        } else {
            vec![self.identifier()?]
        };
        let mut clustering = Vec::new();
        while self.eat_symbol(',') {
            clustering.push(self.identifier()?);
        }
        self.symbol(')')?;
        Ok((partition, clustering))
    }

    fn column_type(&mut self) -> Result<CqlType, String> {
        let name = self.identifier()?;
        let generic = |p: &mut Parser| -> Result<CqlType, String> {
            p.symbol('<')?;
            let inner = p.column_type()?;
            p.symbol('>')?;
            Ok(inner)
        };
        match name.as_str() {
            "frozen" => generic(self),
            "list" => Ok(CqlType::List(Box::new(generic(self)?))),
            "set" => Ok(CqlType::Set(Box::new(generic(self)?))),
            "map" => {
                self.symbol('<')?;
                let key = self.column_type()?;
                self.symbol(',')?;
                let value = self.column_type()?;
                self.symbol('>')?;
                Ok(CqlType::Map(Box::new(key), Box::new(value)))
            }
            simple => CqlType::from_name(simple)
                .ok_or_else(|| format!("type {simple} is not supported by the test node")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_store_statements() {
        let insert = parse(
            "INSERT INTO resume.playback_position (user_id, movie_id, position_ms, updated_at_us, deleted) \
             VALUES (?, ?, ?, ?, false) USING TIMESTAMP ? AND TTL ?",
        )
        .unwrap();
        let Statement::Insert {
            columns,
            values,
            timestamp,
            ttl,
            ..
        } = insert
        else {
            panic!()
        };
        assert_eq!(
            columns,
            [
                "user_id",
                "movie_id",
                "position_ms",
                "updated_at_us",
                "deleted"
            ]
        );
        assert_eq!(values[3], Term::Marker(3));
        assert_eq!(values[4], Term::Bool(false));
        assert_eq!(timestamp, Some(Term::Marker(4)));
        assert_eq!(ttl, Some(Term::Marker(5)));
        let Statement::Insert { timestamp, ttl, .. } =
            parse("INSERT INTO ks.t (a) VALUES (?) USING TTL 60 AND TIMESTAMP ?").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (timestamp, ttl),
            (Some(Term::Marker(1)), Some(Term::Number("60".into())))
        );

        let tombstone = parse(
            "INSERT INTO ks.t (user_id, movie_id, position_ms, updated_at_us, deleted) \
             VALUES (?, ?, 0, ?, TRUE) USING TIMESTAMP ?",
        )
        .unwrap();
        let Statement::Insert {
            values, timestamp, ..
        } = tombstone
        else {
            panic!()
        };
        assert_eq!(
            values,
            [
                Term::Marker(0),
                Term::Marker(1),
                Term::Number("0".into()),
                Term::Marker(2),
                Term::Bool(true)
            ]
        );
        assert_eq!(timestamp, Some(Term::Marker(3)), "literals take no marker");

        let delete =
            parse("DELETE FROM ks.t USING TIMESTAMP ? WHERE user_id = ? AND movie_id = ?").unwrap();
        let Statement::Delete {
            timestamp, filters, ..
        } = delete
        else {
            panic!()
        };
        assert_eq!(timestamp, Some(Term::Marker(0)));
        assert_eq!(filters[1].relation, Relation::Eq(Term::Marker(2)));
    }

    #[test]
    fn parses_driver_metadata_queries() {
        let select = parse("SELECT keyspace_name, replication FROM system_schema.keyspaces where keyspace_name in ?").unwrap();
        let Statement::Select { table, filters, .. } = select else {
            panic!()
        };
        assert_eq!(table.keyspace.as_deref(), Some("system_schema"));
        assert_eq!(filters[0].relation, Relation::In(InValues::Marker(0)));
        assert!(parse("SELECT schema_version FROM system.local WHERE key='local'").is_ok());
    }

    #[test]
    fn parses_schema_ddl() {
        let table = parse(
            "CREATE TABLE IF NOT EXISTS r.p (user_id text, movie_id text, position_ms bigint, \
             PRIMARY KEY ((user_id), movie_id)) WITH comment = 'x'",
        )
        .unwrap();
        let Statement::CreateTable {
            partition_key,
            clustering_key,
            columns,
            ..
        } = table
        else {
            panic!()
        };
        assert_eq!(partition_key, ["user_id"]);
        assert_eq!(clustering_key, ["movie_id"]);
        assert_eq!(columns[2], ("position_ms".to_owned(), CqlType::Bigint));
        let keyspace =
            parse("CREATE KEYSPACE IF NOT EXISTS r WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
                .unwrap();
        assert!(matches!(
            keyspace,
            Statement::CreateKeyspace {
                if_not_exists: true,
                ..
            }
        ));
    }

    #[test]
    fn parses_alter_table_add() {
        let one = parse("ALTER TABLE r.p ADD deleted boolean").unwrap();
        assert_eq!(
            one,
            Statement::AlterTableAdd {
                table: TableName {
                    keyspace: Some("r".into()),
                    name: "p".into()
                },
                columns: vec![("deleted".into(), CqlType::Boolean)],
            }
        );
        let Statement::AlterTableAdd { columns, .. } =
            parse("alter table p add (a int, b list<text>);").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            columns,
            [
                ("a".to_owned(), CqlType::Int),
                ("b".to_owned(), CqlType::List(Box::new(CqlType::Text)))
            ]
        );
        assert!(parse("ALTER TABLE p DROP a").is_err());
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(parse("UPDATE t SET a = 1 WHERE k = 2").is_err());
        assert!(parse("SELECT a FROM t WHERE k > 2").is_err());
        assert!(parse("SELECT a FROM t garbage").is_err());
    }
}
