"""Serve upstream OpenStack Placement for the conformance runner.

Run by upstream-server.sh (with the placement venv's interpreter); it
implements the runner's server hook contract (see README.md): it reads the
PLACEMENT_* environment variables, writes a placement.conf into
$PLACEMENT_STATE_DIR, gives the server a fresh SQLite database and serves
the WSGI application on $PLACEMENT_HOST:$PLACEMENT_PORT with the standard
library's single-threaded wsgiref server until it is terminated.

wsgiref is used on purpose: it hands request headers to the application
unvalidated, so placement itself decides what to do with e.g. a malformed
Content-Length (gunicorn and friends would reject such a request before the
application sees it).
"""

import fcntl
import os
import shutil
import subprocess
import sys
from wsgiref import simple_server


def env(name, default=''):
    return os.environ.get(name, default).strip()


def truthy(value):
    return value.lower() in ('1', 'true', 'yes', 'on')


def write_conf(path, db_path):
    lines = [
        '[DEFAULT]',
        'debug = false',
        'use_stderr = true',
        '',
        '[api]',
        'auth_strategy = %s' % (env('PLACEMENT_AUTH_STRATEGY') or 'noauth2'),
        '',
        '[placement_database]',
        'connection = sqlite:///%s' % db_path,
        'sync_on_startup = false',
        '',
        '[oslo_policy]',
        'enforce_new_defaults = %s' % (
            'true' if truthy(env('PLACEMENT_ENFORCE_NEW_DEFAULTS')) else
            'false'),
    ]
    policy_file = env('PLACEMENT_POLICY_FILE')
    if policy_file:
        lines.append('policy_file = %s' % policy_file)
    else:
        # Point at a file that does not exist so that no stray
        # /etc/placement/policy.yaml can change the defaults.
        lines.append('policy_file = %s' % os.path.join(
            os.path.dirname(path), 'no-policy-overrides.yaml'))
    origin = env('PLACEMENT_CORS_ALLOWED_ORIGIN')
    if origin:
        lines += ['', '[cors]', 'allowed_origin = %s' % origin]
        allow_headers = env('PLACEMENT_CORS_ALLOW_HEADERS')
        if allow_headers:
            lines.append('allow_headers = %s' % allow_headers)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def template_db(run_dir):
    """Return the path of a migrated, otherwise empty SQLite database.

    It is built once per run (placement-manage db sync) under
    $PLACEMENT_RUN_DIR and copied for every server start, which keeps a
    restart well under a second of database work.
    """
    tmpl = os.path.join(run_dir, 'upstream-template.sqlite')
    with open(os.path.join(run_dir, 'upstream-template.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(tmpl):
            work = os.path.join(run_dir, 'upstream-template.d')
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            conf = os.path.join(work, 'placement.conf')
            db = os.path.join(work, 'db.sqlite')
            write_conf(conf, db)
            manage = os.path.join(os.path.dirname(sys.executable),
                                  'placement-manage')
            subprocess.run([manage, '--config-file', conf, 'db', 'sync'],
                           check=True, stdout=sys.stderr)
            os.rename(db, tmpl)
            shutil.rmtree(work, ignore_errors=True)
    return tmpl


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):
        pass

    def get_environ(self):
        env = super().get_environ()
        # wsgiref invents "CONTENT_TYPE: text/plain" when the request has
        # no Content-Type header (email.message's default); placement's
        # tests check how a request *without* one is treated, so do not
        # make one up.
        if self.headers.get('content-type') is None:
            env.pop('CONTENT_TYPE', None)
        return env


def main():
    host = env('PLACEMENT_HOST') or '127.0.0.1'
    port = int(env('PLACEMENT_PORT'))
    state_dir = env('PLACEMENT_STATE_DIR')
    run_dir = env('PLACEMENT_RUN_DIR') or state_dir
    os.makedirs(state_dir, exist_ok=True)

    db_path = os.path.join(state_dir, 'placement.sqlite')
    shutil.copyfile(template_db(run_dir), db_path)
    write_conf(os.path.join(state_dir, 'placement.conf'), db_path)

    # placement.wsgi reads $OS_PLACEMENT_CONFIG_DIR/placement.conf.
    os.environ['OS_PLACEMENT_CONFIG_DIR'] = state_dir
    from placement import wsgi
    app = wsgi.init_application()

    server = simple_server.make_server(host, port, app,
                                       handler_class=QuietHandler)
    print('upstream placement serving on http://%s:%d/' % (host, port),
          file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
