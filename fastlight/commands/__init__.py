"""The verbs of `fastlight` (DESIGN.md section 3, the top layer): one module per verb (or per small family
of verbs), each with `add_parser(sub)` (the verb's arguments on the `fastlight` sub-parser object) and
`run(args)` (parse, pick plug-ins, call components, print). `fastlight.cli` lists them and dispatches.

The components a verb calls are imported inside `run`: `fastlight --help` builds every verb's parser, and
importing torch and every component for it would make each call slow."""
