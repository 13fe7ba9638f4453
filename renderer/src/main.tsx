import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { ConsoleView, useConsoleFeed } from './features/console/ConsoleView';
import { Manager } from './features/manager/Manager';
import './styles.css';

function route(): { view: 'manager' } | { view: 'console'; uuid: string } {
  const m = /^#\/console\/([0-9a-f-]{36})$/.exec(location.hash);
  return m ? { view: 'console', uuid: m[1]! } : { view: 'manager' };
}

function ConsolePage({ uuid }: { uuid: string }) {
  useConsoleFeed(uuid);
  return <ConsoleView uuid={uuid} />;
}

function App() {
  const [r, setR] = useState(route);
  useEffect(() => {
    const on = () => setR(route());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return r.view === 'console' ? <ConsolePage uuid={r.uuid} /> : <Manager />;
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
