// typescript-eslint's recommended type-aware rules; `any` is banned so boundaries stay typed.
// Layers import one way only (docs/protocol.md, "Layers"): common ← protocol ← srlora ← runfolder ← trainer;
// runfolder ← viewmodel ← hub ← supervisor ← extension / cli / serve; the page (webview/) sees protocol, srlora, viewmodel.
import tseslint from 'typescript-eslint';

/** A layer may not import these folders (matched as path segments in relative imports). */
const forbid = (...layers) => ({
  'no-restricted-imports': ['error', {
    patterns: layers.map((l) => ({ group: [`**/${l}/*`, `**/${l}`], message: `this layer may not import src/${l} (imports run one way: see eslint.config.mjs)` })),
  }],
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', '.venv/**', '.stage*/**', 'test-results/**', 'python/**', '*.vsix'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'eqeqeq': ['error', 'smart'],
    },
  },
  { files: ['src/common/**/*.ts'], rules: forbid('protocol', 'srlora', 'runfolder', 'viewmodel', 'trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/protocol/**/*.ts'], rules: forbid('srlora', 'runfolder', 'viewmodel', 'trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/srlora/**/*.ts'], rules: forbid('runfolder', 'viewmodel', 'trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/runfolder/**/*.ts'], rules: forbid('viewmodel', 'trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/trainer/**/*.ts'], rules: forbid('viewmodel', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/viewmodel/**/*.ts'], rules: forbid('trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/hub/**/*.ts'], rules: forbid('trainer', 'supervisor', 'extension', 'cli', 'serve') },
  { files: ['src/supervisor/**/*.ts'], rules: forbid('extension', 'cli', 'serve') },
  { files: ['webview/**/*.ts'], rules: forbid('runfolder', 'trainer', 'hub', 'supervisor', 'extension', 'cli', 'serve') },
);
