// Vite builds the console into one folder of static files (no CDN, no
// runtime fetches outside /api/v1/). JSX goes through esbuild straight to
// Preact's automatic runtime, so no Babel preset is needed.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: process.env.GARDA_WEB_OUT || 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
  logLevel: process.env.CI ? 'warn' : 'info',
});
