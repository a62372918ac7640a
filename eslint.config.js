// The linter's rules: eslint's and typescript-eslint's recommended sets, with unused names allowed when they start
// with "_" (destructuring that drops a field, a parameter a callback signature requires).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', 'out/', 'immunize-data/', 'test-artifacts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  { files: ['services/api/public/**/*.ts'], languageOptions: { globals: { ...globals.browser } } },
);
