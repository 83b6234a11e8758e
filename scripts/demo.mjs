// npm run demo — the built-in demo run with its live dashboard. Replaced as the training process and the
// dashboard land; until then it says what is missing and exits non-zero.
console.error('srlora demo: the training process and dashboard are not built yet (see docs/ROADMAP in the issues).');
process.exit(1);
