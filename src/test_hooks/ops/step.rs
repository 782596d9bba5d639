//! One operation of a sequence: run against the vault and the model, answers compared (one
//! arm per operation).

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

impl Harness {
    /// Runs one operation against the vault and the model, and compares their answers.
    pub(super) fn step(&mut self, op: Op, input: &mut Input<'_>) -> Result<(), String> {
        match op {
            Op::PutToken | Op::PutSecret => {
                let (ns, key, v) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                self.log.push(format!("{op:?} {ns:?} {key:?} {v}"));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let (value, got) = if op == Op::PutToken {
                    let t = token(v);
                    let got = handle.put(key, &t);
                    (Value::Token(t), got)
                } else {
                    let s = secret(v);
                    let got = handle.put(key, &Secret::from_bytes(s.clone().into()));
                    (Value::Secret(s), got)
                };
                let version = got.map_err(|e| format!("put failed: {}", describe(&e)))?;
                self.wrote(ns, key, Some(value), Some(version))
            }
            Op::GetToken | Op::GetSecret | Op::GetVersioned => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                self.log.push(format!("{op:?} {ns:?} {key:?}"));
                let expected = self.current(ns, key).cloned();
                let want = match (op, &expected) {
                    (Op::GetToken, _) | (Op::GetVersioned, None) => RecordType::Token,
                    (Op::GetVersioned, Some(e)) => e.value.record_type(),
                    _ => RecordType::Secret,
                };
                let got = self.read(ns, key, want);
                match (expected, got) {
                    (None, Ok(None)) => Ok(()),
                    (Some(e), Err(Error::WrongRecordType { expected, found }))
                        if e.value.record_type() != want
                            && expected == want
                            && found == e.value.record_type() =>
                    {
                        Ok(())
                    }
                    (Some(e), Ok(Some((value, version))))
                        if e.value.record_type() == want && same(&e.value, &value) =>
                    {
                        if version == e.version {
                            Ok(())
                        } else {
                            Err(format!(
                                "version {} read, {} written",
                                version.as_u64(),
                                e.version.as_u64()
                            ))
                        }
                    }
                    (e, got) => Err(format!(
                        "read as {want}: the model has {}, the vault answered {}",
                        e.map_or("nothing".to_string(), |e| format!(
                            "a {} at {}",
                            e.value.record_type(),
                            e.version.as_u64()
                        )),
                        match got {
                            Ok(None) => "nothing".to_string(),
                            Ok(Some((v, ver))) => {
                                format!("a different {} at {}", v.record_type(), ver.as_u64())
                            }
                            Err(e) => describe(&e),
                        }
                    )),
                }
            }
            Op::CasCurrent | Op::CasStale | Op::CasNone => {
                let (ns, key, v) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                let current = self.current(ns, key).map(|e| e.version);
                let expected = match op {
                    Op::CasCurrent => current,
                    Op::CasNone => None,
                    _ => {
                        let pick = input.byte();
                        if self.seen.is_empty() {
                            None
                        } else {
                            Some(self.seen[usize::from(pick) % self.seen.len()])
                        }
                    }
                };
                self.log.push(format!(
                    "{op:?} {ns:?} {key:?} {v} expected={:?}",
                    expected.map(Version::as_u64)
                ));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let t = token(v);
                let got = handle
                    .compare_and_swap(key, expected, &t)
                    .map_err(|e| format!("compare_and_swap failed: {}", describe(&e)))?;
                if expected == current {
                    let version = got.map_err(|c| format!("unexpected {c:?}"))?;
                    self.wrote(ns, key, Some(Value::Token(t)), Some(version))
                } else {
                    match got {
                        Err(Conflict { current: c }) if c == current => Ok(()),
                        other => Err(format!(
                            "expected a conflict at {:?}, got {:?}",
                            current.map(Version::as_u64),
                            other.map(Version::as_u64)
                        )),
                    }
                }
            }
            Op::CarCurrent | Op::CarStale => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                let current = self.current(ns, key).map(|e| e.version);
                let expected = if op == Op::CarCurrent {
                    current.or_else(|| self.seen.last().copied())
                } else {
                    let pick = input.byte();
                    if self.seen.is_empty() {
                        current
                    } else {
                        Some(self.seen[usize::from(pick) % self.seen.len()])
                    }
                };
                let Some(expected) = expected else {
                    self.log
                        .push(format!("{op:?} {ns:?} {key:?} (no version known: skipped)"));
                    return Ok(());
                };
                self.log.push(format!(
                    "{op:?} {ns:?} {key:?} expected={}",
                    expected.as_u64()
                ));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let got = handle
                    .compare_and_remove(key, expected)
                    .map_err(|e| format!("compare_and_remove failed: {}", describe(&e)))?;
                if Some(expected) == current {
                    got.map_err(|c| format!("unexpected {c:?}"))?;
                    self.wrote(ns, key, None, None)
                } else {
                    match got {
                        Err(Conflict { current: c }) if c == current => Ok(()),
                        other => Err(format!(
                            "expected a conflict at {:?}, got {other:?}",
                            current.map(Version::as_u64)
                        )),
                    }
                }
            }
            Op::Remove => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                self.log.push(format!("{op:?} {ns:?} {key:?}"));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let existed = self.current(ns, key).is_some();
                let got = handle
                    .remove(key)
                    .map_err(|e| format!("remove failed: {}", describe(&e)))?;
                if got != existed {
                    return Err(format!("remove returned {got}, the model says {existed}"));
                }
                if existed {
                    self.wrote(ns, key, None, None)?;
                }
                Ok(())
            }
            Op::Keys => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                self.check_keys(ns)
            }
            Op::Namespaces => self.check_namespaces(),
            Op::RemoveNamespace => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                let got = self
                    .vault
                    .remove_namespace(ns)
                    .map_err(|e| format!("remove_namespace failed: {}", describe(&e)))?;
                let existed = self.namespaces.remove(ns).is_some();
                // A write in storage when the namespace existed (no header write).
                if existed {
                    self.dirty = true;
                }
                if got != existed {
                    return Err(format!(
                        "remove_namespace returned {got}, the model says {existed}"
                    ));
                }
                Ok(())
            }
            Op::AddKeyslot => {
                let k = input.pick(&RAW_KEYS);
                self.log.push(format!("{op:?} key {k}"));
                let got = self.vault.add_keyslot(&raw(k));
                if self.slots.len() >= crate::format::MAX_KEYSLOTS {
                    return match got {
                        Err(Error::KeyslotLimit) => Ok(()),
                        other => Err(format!(
                            "expected KeyslotLimit, got {:?}",
                            other.map_err(|e| describe(&e))
                        )),
                    };
                }
                // A key that already opens a slot is refused, naming the first such slot.
                if let Some(&(existing, _)) = self.slots.iter().find(|s| s.1 == k) {
                    return match got {
                        Err(Error::KeyslotExists { slot }) if slot == existing => Ok(()),
                        other => Err(format!(
                            "expected KeyslotExists {{ slot: {existing} }}, got {:?}",
                            other.map_err(|e| describe(&e))
                        )),
                    };
                }
                let id = got.map_err(|e| format!("add_keyslot: {}", describe(&e)))?;
                if id != self.next_slot {
                    return Err(format!("new slot id {id}, expected {}", self.next_slot));
                }
                self.slots.push((id, k));
                self.known.insert(id);
                self.next_slot += 1;
                self.seqid += 1;
                Ok(())
            }
            Op::RemoveKeyslot => {
                let pick = input.byte();
                let id = if pick >= 0xf0 || self.slots.is_empty() {
                    self.next_slot + u32::from(pick & 0x0f)
                } else {
                    self.slots[usize::from(pick) % self.slots.len()].0
                };
                self.log.push(format!("{op:?} slot {id}"));
                let got = self.vault.remove_keyslot(id);
                let exists = self.slots.iter().any(|s| s.0 == id);
                match got {
                    Err(Error::NoSuchKeyslot { slot }) if !exists && slot == id => Ok(()),
                    Err(Error::LastKeyslot) if exists && self.slots.len() == 1 => Ok(()),
                    Ok(()) if exists && self.slots.len() > 1 => {
                        self.slots.retain(|s| s.0 != id);
                        self.known.remove(&id);
                        self.seqid += 1;
                        Ok(())
                    }
                    other => Err(format!(
                        "remove_keyslot({id}) gave {:?}; the model has slots {:?}",
                        other.map_err(|e| describe(&e)),
                        self.slots
                    )),
                }
            }
            Op::ChangeKey => {
                let (old, new) = (input.pick(&RAW_KEYS), input.pick(&RAW_KEYS));
                self.log.push(format!("{op:?} {old} -> {new}"));
                let got = self.vault.change_passphrase(&raw(old), &raw(new));
                // Every slot that the old key opens is changed, and named (in stored order),
                // unless the new key already opens another slot.
                let ids: Vec<u32> = self
                    .slots
                    .iter()
                    .filter(|s| s.1 == old)
                    .map(|s| s.0)
                    .collect();
                let taken = self
                    .slots
                    .iter()
                    .find(|s| s.1 == new && !ids.contains(&s.0))
                    .map(|s| s.0);
                match got {
                    Err(Error::WrongKey) if ids.is_empty() => Ok(()),
                    Err(Error::KeyslotExists { slot })
                        if !ids.is_empty() && taken == Some(slot) =>
                    {
                        Ok(())
                    }
                    Ok(changed) if !ids.is_empty() && taken.is_none() && changed == ids => {
                        for slot in &mut self.slots {
                            if slot.1 == old {
                                slot.1 = new;
                                self.known.insert(slot.0);
                            }
                        }
                        self.seqid += 1;
                        Ok(())
                    }
                    other => Err(format!(
                        "change_passphrase gave {:?}; the model's slots for it: {ids:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
            Op::RotateNamespaceKey => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                let got = self.vault.rotate_namespace_key(ns, |_| {});
                match (self.namespaces.get_mut(ns), got) {
                    (None, Err(Error::InvalidName { .. })) => Ok(()),
                    (Some(model), Ok(report)) => {
                        let expected = model.records.len() as u64 + u64::from(model.has_manifest);
                        if report.key_id != model.key_id + 1 || report.resealed != expected {
                            return Err(format!(
                                "rotation report {report:?}, expected key id {} and {expected} re-sealed",
                                model.key_id + 1
                            ));
                        }
                        model.key_id += 1;
                        // Entry writes in storage, no header write.
                        self.dirty = true;
                        Ok(())
                    }
                    (m, other) => Err(format!(
                        "rotate_namespace_key gave {:?} (namespace in the model: {})",
                        other.map_err(|e| describe(&e)),
                        m.is_some()
                    )),
                }
            }
            Op::RotateMasterKey => {
                // arg & 1: pass the raw keys of the slots this handle does not know (each
                // source unlocks the first slot, in stored order, that it opens and whose
                // secret is not known yet).
                let with_others = input.byte() & 1 != 0;
                let mut known = self.known.clone();
                let mut others: Vec<u8> = Vec::new();
                if with_others {
                    for (id, k) in &self.slots {
                        if !self.known.contains(id) {
                            others.push(*k);
                        }
                    }
                    for k in &others {
                        let unknown = self
                            .slots
                            .iter()
                            .find(|s| s.1 == *k && !known.contains(&s.0))
                            .map(|s| s.0);
                        if let Some(id) = unknown {
                            known.insert(id);
                        }
                    }
                }
                let sources: Vec<KeySource> = others.iter().map(|k| raw(*k)).collect();
                let refs: Vec<&KeySource> = sources.iter().collect();
                let got = self.vault.rotate_master_key_with(&refs);
                let missing: Vec<u32> = self
                    .slots
                    .iter()
                    .map(|s| s.0)
                    .filter(|id| !known.contains(id))
                    .collect();
                self.log.push(format!(
                    "{op:?} with keys {others:?} (still unknown slots {missing:?})"
                ));
                match got {
                    Ok(()) if missing.is_empty() => {
                        self.known = known;
                        self.seqid += 1;
                        Ok(())
                    }
                    Err(Error::SlotSecretsMissing { slots }) if slots == missing => Ok(()),
                    other => Err(format!(
                        "rotate_master_key gave {:?}, expected missing {missing:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
            Op::Reopen => {
                let (k, sel) = (input.pick(&RAW_KEYS), input.byte());
                self.log.push(format!("{op:?} key {k} sel {sel}"));
                self.reopen(k, sel)
            }
            Op::Verify => self.check_verify(),
            Op::Keyslots => {
                let got = self.vault.keyslots().map_err(|e| describe(&e))?;
                let ids: Vec<u32> = got.iter().map(|s| s.id).collect();
                let want: Vec<u32> = self.slots.iter().map(|s| s.0).collect();
                if ids != want
                    || got
                        .iter()
                        .any(|s| s.kind != SlotKind::RawKey || s.kdf.is_some())
                {
                    return Err(format!("keyslots {got:?}, the model has {:?}", self.slots));
                }
                Ok(())
            }
            Op::PutLargest => {
                let (ns, key, arg) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                // A secret body is le64(len) || key || le64(len) || value (docs/format.md
                // 5.4): 16 + key + value bytes. Aim at the largest body, -1, +0, +1.
                let delta = arg % 3;
                let body = MAX_BODY - 1 + usize::from(delta);
                let len = body - 16 - key.len();
                // A 64 KiB record makes every later read and verify slow (instrumented code
                // touches each byte): keep it only when asked, otherwise remove it at once.
                let keep = arg >= 0xf0;
                self.log
                    .push(format!("{op:?} {ns:?} {key:?} {len} bytes, keep: {keep}"));
                let value = vec![delta; len];
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let got = handle.put(key, &Secret::from_bytes(value.clone().into()));
                if body > MAX_BODY {
                    return match got {
                        Err(Error::TooLarge { .. }) => Ok(()),
                        other => Err(format!(
                            "a body of {body} bytes: expected TooLarge, got {:?}",
                            other.map(Version::as_u64).map_err(|e| describe(&e))
                        )),
                    };
                }
                let version =
                    got.map_err(|e| format!("put of the largest record: {}", describe(&e)))?;
                self.wrote(ns, key, Some(Value::Secret(value.clone())), Some(version))?;
                match self.read(ns, key, RecordType::Secret) {
                    Ok(Some((Value::Secret(back), v))) if back == value && v == version => {}
                    _ => return Err("the largest record does not read back".into()),
                }
                if !keep {
                    match handle.remove(key) {
                        Ok(true) => self.wrote(ns, key, None, None)?,
                        other => {
                            return Err(format!(
                                "removing the largest record gave {:?}",
                                other.map_err(|e| describe(&e))
                            ))
                        }
                    }
                }
                Ok(())
            }
            Op::InvalidName => {
                let (ns, key, which) =
                    (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte() % 4);
                self.log.push(format!("{op:?} {ns:?} {key:?} {which}"));
                let long = "x".repeat(crate::format::MAX_NAME_LEN + 1);
                let got = match which {
                    0 => self.vault.namespace("").map(|_| ()),
                    1 => self.vault.namespace(&long).map(|_| ()),
                    2 => self
                        .vault
                        .namespace(ns)
                        .and_then(|h| h.put("", &token(0)).map(|_| ())),
                    _ => self
                        .vault
                        .namespace(ns)
                        .and_then(|h| h.get::<Token>(&long).map(|_| ())),
                };
                match got {
                    Err(Error::InvalidName { .. }) => Ok(()),
                    other => Err(format!(
                        "an invalid name gave {:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
        }
    }
}
