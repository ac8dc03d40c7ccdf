-- The role the operator's credential was issued for (tracer, report, ops), beside its name:
-- every query at the centre is logged with who asked and as what (issue #15).
ALTER TABLE access_log ADD COLUMN role TEXT;
