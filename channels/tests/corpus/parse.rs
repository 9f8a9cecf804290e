//! Parser for the corpus format (see the header of `tests/corpus.rs`).
//!
//! Parsing needs no library call, so it is tested on its own by
//! `corpus_parses`.

/// One operation of the op language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Say(String),
    Schedule,
    ScheduleRemove,
    Run,
    Setup(usize),
    Insert(usize),
    Remove(usize),
    RunT(usize),
    Kill(usize),
    Send(usize, String),
    Recv(usize),
    /// Preference as in Stackless: -1 receiver, 0 neither, 1 sender.
    Pref(usize, i8),
    SchedAll(usize, bool),
    Close(usize),
    Open(usize),
    BeNice,
    RunNice,
    QBalance(usize),
    QRuncount,
    QState(usize),
}

impl Op {
    /// The tasklet index this op refers to, if any.
    fn tasklet(&self) -> Option<usize> {
        match self {
            Op::Setup(k)
            | Op::Insert(k)
            | Op::Remove(k)
            | Op::RunT(k)
            | Op::Kill(k)
            | Op::QState(k) => Some(*k),
            _ => None,
        }
    }

    /// The channel index this op refers to, if any.
    fn channel(&self) -> Option<usize> {
        match self {
            Op::Send(c, _)
            | Op::Recv(c)
            | Op::Pref(c, _)
            | Op::SchedAll(c, _)
            | Op::Close(c)
            | Op::Open(c)
            | Op::QBalance(c) => Some(*c),
            _ => None,
        }
    }
}

/// One corpus program and the output Stackless printed for it.
#[derive(Clone, Debug)]
pub struct Program {
    pub number: u32,
    /// 1-based line of `program N` in the corpus file.
    pub line: usize,
    /// Tokens of the `features:` comment, if any.
    pub features: Vec<String>,
    pub channels: usize,
    /// Op lists of T0..T{K-1}.
    pub tasklets: Vec<Vec<Op>>,
    pub main: Vec<Op>,
    /// The `expect:` block, verbatim, up to and including `M END`.
    pub expect: Vec<String>,
    /// The program's source lines (from `program N` to `end`), for reports.
    pub source: Vec<String>,
}

/// Parses a whole corpus file.
pub fn parse_corpus(text: &str) -> Result<Vec<Program>, String> {
    let mut programs = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((no, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let number = trimmed
            .strip_prefix("program ")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("line {no}: expected `program N`, found {line:?}"))?;
        let p = parse_program(number, no, line, &mut lines)
            .map_err(|e| format!("program {number} (line {no}): {e}"))?;
        programs.push(p);
    }
    Ok(programs)
}

fn parse_program<'a>(
    number: u32,
    line: usize,
    first: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Program, String> {
    let mut source = vec![first.to_string()];
    let mut features = Vec::new();
    let mut channels = None;
    let mut tasklets: Vec<Vec<Op>> = Vec::new();
    let mut main = None;
    // Header: comments, `channels`, `Tk:` lines, `main:`, then `expect:`.
    loop {
        let (no, l) = lines
            .next()
            .ok_or("end of file before `expect:`".to_string())?;
        source.push(l.to_string());
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(comment) = t.strip_prefix('#') {
            if let Some((_, f)) = comment.split_once("features:") {
                features.extend(f.split_whitespace().map(str::to_string));
            }
            continue;
        }
        if t == "expect:" {
            break;
        }
        let at = |e: String| format!("line {no}: {e}");
        if let Some(c) = t.strip_prefix("channels ") {
            if channels.is_some() {
                return Err(at("second `channels` line".into()));
            }
            channels = Some(num(c.trim()).map_err(at)?);
        } else if let Some(ops) = t.strip_prefix("main:") {
            if main.is_some() {
                return Err(at("second `main:` line".into()));
            }
            main = Some(parse_ops(ops).map_err(at)?);
        } else if let Some((label, ops)) = t.split_once(':') {
            let k = label
                .strip_prefix('T')
                .and_then(|k| k.parse::<usize>().ok())
                .ok_or_else(|| at(format!("unknown line {l:?}")))?;
            if k != tasklets.len() || main.is_some() {
                return Err(at(format!("`T{k}:` out of order")));
            }
            tasklets.push(parse_ops(ops).map_err(at)?);
        } else {
            return Err(at(format!("unknown line {l:?}")));
        }
    }
    // Expected output: verbatim until `end`.
    let mut expect = Vec::new();
    loop {
        let (_, l) = lines
            .next()
            .ok_or("end of file inside `expect:`".to_string())?;
        source.push(l.to_string());
        if l.trim() == "end" {
            break;
        }
        expect.push(l.trim_end().to_string());
    }
    let p = Program {
        number,
        line,
        features,
        channels: channels.ok_or("no `channels` line")?,
        tasklets,
        main: main.ok_or("no `main:` line")?,
        expect,
        source,
    };
    validate(&p)?;
    Ok(p)
}

/// Checks indices and the shape of the expected output.
fn validate(p: &Program) -> Result<(), String> {
    let k = p.tasklets.len();
    let mut ops = p.main.iter().chain(p.tasklets.iter().flatten());
    if let Some(op) = ops.find(|op| {
        op.tasklet().is_some_and(|t| t >= k) || op.channel().is_some_and(|c| c >= p.channels)
    }) {
        return Err(format!(
            "{op:?} out of range ({k} tasklets, {} channels)",
            p.channels
        ));
    }
    if p.main.last() != Some(&Op::Say("END".into())) {
        return Err("main does not end with `say END`".into());
    }
    if p.expect.last().map(String::as_str) != Some("M END") {
        return Err("expected output does not end with `M END`".into());
    }
    for l in &p.expect {
        let who = l.split(' ').next().unwrap_or_default();
        let ok = who == "M"
            || who
                .strip_prefix('T')
                .and_then(|t| t.parse::<usize>().ok())
                .is_some_and(|t| t < k);
        if !ok || l.len() <= who.len() + 1 {
            return Err(format!("bad expected line {l:?}"));
        }
    }
    Ok(())
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("bad number {s:?}"))
}

fn parse_ops(s: &str) -> Result<Vec<Op>, String> {
    s.split(';').map(parse_op).collect()
}

fn parse_op(s: &str) -> Result<Op, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let bad = || format!("bad op {:?}", s.trim());
    let n = |i: usize| num(words[i]);
    let op = match (words.first().copied().unwrap_or(""), words.len()) {
        ("say", 2) => Op::Say(words[1].to_string()),
        ("schedule", 1) => Op::Schedule,
        ("schedule_remove", 1) => Op::ScheduleRemove,
        ("run", 1) => Op::Run,
        ("setup", 2) => Op::Setup(n(1)?),
        ("insert", 2) => Op::Insert(n(1)?),
        ("remove", 2) => Op::Remove(n(1)?),
        ("run_t", 2) => Op::RunT(n(1)?),
        ("kill", 2) => Op::Kill(n(1)?),
        ("send", 3) => Op::Send(n(1)?, words[2].to_string()),
        ("recv", 2) => Op::Recv(n(1)?),
        ("pref", 3) => Op::Pref(
            n(1)?,
            match words[2] {
                "-1" => -1,
                "0" => 0,
                "1" => 1,
                _ => return Err(bad()),
            },
        ),
        ("sched_all", 3) => Op::SchedAll(
            n(1)?,
            match words[2] {
                "0" => false,
                "1" => true,
                _ => return Err(bad()),
            },
        ),
        ("close", 2) => Op::Close(n(1)?),
        ("open", 2) => Op::Open(n(1)?),
        ("be_nice", 1) => Op::BeNice,
        ("run_nice", 1) => Op::RunNice,
        ("q_balance", 2) => Op::QBalance(n(1)?),
        ("q_runcount", 1) => Op::QRuncount,
        ("q_state", 2) => Op::QState(n(1)?),
        _ => return Err(bad()),
    };
    Ok(op)
}
