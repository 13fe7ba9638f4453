// Electron Forge: the development loop (`npx electron-forge start` where an Electron
// binary exists). Packaging for users is electron-builder's job (electron-builder.yml).
// Typed locally so this file type-checks without @electron-forge installed (it can't
// run here anyway: no Electron binary); the shape is Forge 7's ForgeConfig.

interface ForgeMaker {
  name: string;
  platforms?: string[];
  config?: Record<string, unknown>;
}

interface ForgeConfigShape {
  packagerConfig: {
    name: string;
    executableName: string;
    icon: string;
    asar: { unpack: string };
    ignore: RegExp[];
  };
  rebuildConfig: { onlyModules: string[] };
  makers: ForgeMaker[];
  hooks?: Record<string, () => Promise<void>>;
}

const config: ForgeConfigShape = {
  packagerConfig: {
    name: 'Vireo',
    executableName: 'vireo',
    icon: 'resources/icons/512x512',
    // The native addon and the engine host must load from real files.
    asar: { unpack: '**/{*.node,vireo-img,engine-host/**}' },
    // Of native/out only the vireo-img tool ships (storage and the wizard run it).
    ignore: [
      /^\/(native\/(core|binding|tests|fuzz|guests)|e2e|bench|renderer\/src|docs|\.ci)(\/|$)/,
      /^\/native\/out\/(?!core(\/vireo-img)?$)/,
    ],
  },
  // The addon is built by scripts/setup.sh (node-gyp against Electron's headers when packaging).
  rebuildConfig: { onlyModules: [] },
  makers: [
    { name: '@electron-forge/maker-zip', platforms: ['linux'] },
    { name: '@electron-forge/maker-deb', config: { options: { icon: 'resources/icons/512x512.png', categories: ['System', 'Emulator'] } } },
  ],
};

export default config;
