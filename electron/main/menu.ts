import { Menu, type MenuItemConstructorOptions, app } from 'electron';

export function buildMenu(actions: { newVm(): void; showManager(): void }): Menu {
  const template: MenuItemConstructorOptions[] = [
    {
      label: '&File',
      submenu: [
        { label: 'New VM…', accelerator: 'CmdOrCtrl+N', click: actions.newVm },
        { label: 'Virtual Machine Manager', accelerator: 'CmdOrCtrl+M', click: actions.showManager },
        { type: 'separator' },
        { role: 'close' },
        { role: 'quit' },
      ],
    },
    { label: '&Edit', submenu: [{ role: 'copy' }, { role: 'paste' }, { role: 'selectAll' }] },
    {
      label: '&View',
      submenu: [{ role: 'togglefullscreen' }, { role: 'resetZoom' }, { role: 'zoomIn' }, { role: 'zoomOut' }, ...(app.isPackaged ? [] : [{ role: 'toggleDevTools' } as const])],
    },
    { label: '&Help', submenu: [{ label: `Vireo ${app.getVersion()}`, enabled: false }] },
  ];
  return Menu.buildFromTemplate(template);
}
