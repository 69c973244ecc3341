"""Gabbi fixtures for running upstream placement's gabbits over real HTTP.

Upstream's functional tests (placement/tests/functional/fixtures/gabbits.py)
run the placement WSGI app in-process and build their scenario data by
writing straight into the database. This module provides a class with the
same name for every fixture the YAML files list, but it builds the same
scenario through the public placement HTTP API of whatever server run.py
started, so any implementation can be measured.

What each fixture must reproduce, because the YAML files depend on it:

* the environment variables ($ENVIRON['...']) the YAML reads, with the same
  names and the same meaning (mostly fresh random UUIDs);
* the same providers (names, parents, aggregates), inventories (including
  reserved / min_unit / max_unit / step_size / allocation_ratio), traits,
  custom resource classes, consumers, users and projects;
* the same *order* of writes, so provider generations and the server's
  internal creation order (which shows up in result ordering) match what
  upstream's fixtures produce. In particular aggregates are associated with
  the pre-1.19 form of PUT /resource_providers/{uuid}/aggregates, which,
  like upstream's direct database call, does not bump the provider
  generation; inventories, traits and allocations do bump it, as they do
  upstream.

Fixtures also declare the *server mode* a file needs (CORS, policy
overrides, enforce_new_defaults); run.py reads that before it starts the
server for the file (see server_mode() below and README.md).

Nothing here imports upstream placement's database or object code.
"""

import http.client
import json
import os
import urllib.parse
import uuid

from gabbi import fixture

# Set by run.py before a file's fixtures start: the root URL of the
# placement service under test, e.g. "http://127.0.0.1:45678".
BASE_URL = os.environ.get('PLACEMENT_URL', '')

# Token used for all fixture set-up requests. In the noauth2 scheme the
# token "admin" means user "admin", project "admin", role "admin"
# (project-scoped), which every policy mode used by the suite allows.
ADMIN_TOKEN = 'admin'

# Microversions used for set-up calls (chosen to match the semantics of
# upstream's direct database writes; see the module docstring).
MV_CREATE_PROVIDER = '1.20'   # POST /resource_providers returns the body
MV_AGGREGATES = '1.1'         # list body; does not bump the generation
MV_INVENTORY = '1.26'
MV_TRAITS = '1.6'
MV_RESOURCE_CLASS = '1.7'     # PUT /resource_classes/{name}
MV_ALLOCATIONS = '1.28'       # consumer generations, no consumer types


def new_uuid():
    return str(uuid.uuid4())


class FixtureError(Exception):
    pass


class Client:
    """A tiny JSON client for the placement API (stdlib only)."""

    def __init__(self, base_url, token=ADMIN_TOKEN, timeout=60):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != 'http':
            raise FixtureError('only http:// URLs are supported: %r'
                               % base_url)
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip('/')
        self.token = token
        self.timeout = timeout

    def call(self, method, path, body=None, microversion=None,
             expect=(200, 201, 204)):
        headers = {'x-auth-token': self.token,
                   'accept': 'application/json'}
        if microversion:
            headers['openstack-api-version'] = 'placement %s' % microversion
        data = None
        if body is not None:
            data = json.dumps(body).encode('utf-8')
            headers['content-type'] = 'application/json'
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=data,
                         headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status not in expect:
            raise FixtureError('%s %s (microversion %s) -> %d: %s' % (
                method, path, microversion, resp.status,
                raw.decode('utf-8', 'replace')[:2000]))
        if raw and resp.getheader('content-type', '').startswith(
                'application/json'):
            return json.loads(raw)
        return None


class Provider:
    def __init__(self, name, uuid, generation):
        self.name = name
        self.uuid = uuid
        self.generation = generation


class Builder:
    """Create placement entities over HTTP, mirroring upstream's
    placement.tests.functional.db.test_base helpers."""

    def __init__(self, client):
        self.client = client
        self._known_rcs = set()
        self._known_traits = set()

    def create_provider(self, name, *aggregates, parent=None, uuid=None):
        body = {'name': name, 'uuid': uuid or new_uuid()}
        if parent is not None:
            body['parent_provider_uuid'] = parent.uuid
        got = self.client.call('POST', '/resource_providers', body,
                               MV_CREATE_PROVIDER, expect=(200,))
        rp = Provider(name, got['uuid'], got['generation'])
        if aggregates:
            self.set_aggregates(rp, *aggregates)
        return rp

    def set_aggregates(self, rp, *aggregates):
        # Pre-1.19 form: a bare list, no generation check or increment.
        self.client.call('PUT', '/resource_providers/%s/aggregates' % rp.uuid,
                         list(aggregates), MV_AGGREGATES, expect=(200,))

    def ensure_resource_class(self, name):
        if name.startswith('CUSTOM_') and name not in self._known_rcs:
            self.client.call('PUT', '/resource_classes/%s' % name, None,
                             MV_RESOURCE_CLASS, expect=(201, 204))
        self._known_rcs.add(name)

    def add_inventory(self, rp, resource_class, total, **kwargs):
        self.ensure_resource_class(resource_class)
        kwargs.setdefault('max_unit', total)
        body = dict(kwargs, resource_class=resource_class, total=total,
                    resource_provider_generation=rp.generation)
        got = self.client.call(
            'POST', '/resource_providers/%s/inventories' % rp.uuid, body,
            MV_INVENTORY, expect=(201,))
        rp.generation = got['resource_provider_generation']

    def set_traits(self, rp, *traits):
        for name in traits:
            if name.startswith('CUSTOM_') and name not in self._known_traits:
                self.client.call('PUT', '/traits/%s' % name, None,
                                 MV_TRAITS, expect=(201, 204))
                self._known_traits.add(name)
        got = self.client.call(
            'PUT', '/resource_providers/%s/traits' % rp.uuid,
            {'traits': list(traits),
             'resource_provider_generation': rp.generation},
            MV_TRAITS, expect=(200,))
        rp.generation = got['resource_provider_generation']

    def allocate(self, rp, resources, project_id, user_id,
                 consumer_uuid=None):
        """Give a brand-new consumer an allocation against one provider.

        Returns the consumer UUID.
        """
        consumer_uuid = consumer_uuid or new_uuid()
        self.client.call(
            'PUT', '/allocations/%s' % consumer_uuid,
            {'allocations': {rp.uuid: {'resources': dict(resources)}},
             'project_id': project_id,
             'user_id': user_id,
             'consumer_generation': None},
            MV_ALLOCATIONS, expect=(204,))
        # Writing allocations bumps the provider generation.
        got = self.client.call('GET', '/resource_providers/%s' % rp.uuid,
                               None, MV_CREATE_PROVIDER, expect=(200,))
        rp.generation = got['generation']
        return consumer_uuid


def server_mode(fixture_classes):
    """Return the server mode a list of fixture classes requires.

    A dict with keys ``enforce_new_defaults`` (bool), ``cors_allowed_origin``
    (str or None), ``cors_allow_headers`` (list of str) and ``open_policy``
    (bool). Later fixtures override earlier ones.
    """
    mode = {'enforce_new_defaults': False, 'cors_allowed_origin': None,
            'cors_allow_headers': [], 'open_policy': False}
    for cls in fixture_classes:
        for klass in reversed(cls.__mro__):
            mode.update(getattr(klass, '__dict__', {}).get('SERVER_MODE', {}))
    return mode


def open_policy_rules():
    """Policy overrides equivalent to upstream's OpenPolicyFixture: every
    registered placement rule becomes "@" (anyone), except the base
    "admin_api" rule.

    The rule names are taken from the pinned upstream package's policy
    registry (placement.policies, which has no database code in it) so
    they track the version whose YAML files we run.
    """
    from placement import policies
    return {rule.name: '@' for rule in policies.list_rules()
            if rule.name != 'admin_api'}


class APIFixture(fixture.GabbiFixture):
    """Empty service; exports the IDs the YAML files use for entities they
    create themselves."""

    # Upstream sets [oslo_policy] enforce_new_defaults = False for every
    # fixture except SecureRBACPolicyFixture.
    SERVER_MODE = {'enforce_new_defaults': False}

    ENV_UUIDS = (
        'RP_UUID', 'RP_NAME', 'RP_UUID1', 'RP_NAME1', 'RP_UUID2', 'RP_NAME2',
        'PROJECT_ID', 'ADMIN_PROJECT_ID', 'SERVICE_PROJECT_ID', 'USER_ID',
        'PROJECT_ID_ALT', 'USER_ID_ALT', 'INSTANCE_UUID', 'MIGRATION_UUID',
        'CONSUMER_UUID', 'PARENT_PROVIDER_UUID', 'ALT_PARENT_PROVIDER_UUID',
    )

    def start_fixture(self):
        if not BASE_URL:
            raise FixtureError('fixtures.BASE_URL is not set')
        self.client = Client(BASE_URL)
        self.b = Builder(self.client)
        # Guard against a server hook that did not start from an empty
        # database: every file assumes it does.
        got = self.client.call('GET', '/resource_providers', expect=(200,))
        if got['resource_providers']:
            raise FixtureError(
                'server is not empty at fixture start: %d resource '
                'providers already exist' % len(got['resource_providers']))
        for name in self.ENV_UUIDS:
            os.environ[name] = new_uuid()
        os.environ['CUSTOM_RES_CLASS'] = 'CUSTOM_IRON_NFV'
        os.environ['CUSTOM_RES_CLASS1'] = 'CUSTOM_IRON_NFV1'
        os.environ['CUSTOM_RES_CLASS2'] = 'CUSTOM_IRON_NFV2'

    def stop_fixture(self):
        # The server (and its database) is discarded by run.py.
        pass


class AllocationFixture(APIFixture):
    """One provider (RP_UUID/RP_NAME) with DISK_GB 2048 (min 10, max 1000,
    step 10) and VCPU 10 (max 10), and three consumers of it:

    * CONSUMER_0: DISK_GB 1000, user USER_ID, project PROJECT_ID
    * CONSUMER_ID: VCPU 6, user USER_ID, project PROJECT_ID
    * ALT_CONSUMER_ID: DISK_GB 20 + VCPU 1, user ALT_USER_ID,
      project PROJECT_ID

    ALT_RP_UUID / ALT_RP_NAME name a provider that is *not* created.
    """

    def start_fixture(self):
        super().start_fixture()
        os.environ['ALT_USER_ID'] = new_uuid()
        project = os.environ['PROJECT_ID']
        user = os.environ['USER_ID']
        alt_user = os.environ['ALT_USER_ID']

        b = self.b
        rp = b.create_provider(os.environ['RP_NAME'],
                               uuid=os.environ['RP_UUID'])
        b.add_inventory(rp, 'DISK_GB', 2048,
                        step_size=10, min_unit=10, max_unit=1000)
        b.add_inventory(rp, 'VCPU', 10, max_unit=10)

        os.environ['CONSUMER_0'] = b.allocate(
            rp, {'DISK_GB': 1000}, project, user)
        os.environ['CONSUMER_ID'] = b.allocate(
            rp, {'VCPU': 6}, project, user)
        os.environ['ALT_CONSUMER_ID'] = b.allocate(
            rp, {'DISK_GB': 20, 'VCPU': 1}, project, alt_user)

        os.environ['ALT_RP_UUID'] = new_uuid()
        os.environ['ALT_RP_NAME'] = new_uuid()


class SharedStorageFixture(APIFixture):
    """Two compute nodes and two sharing storage providers in one aggregate
    (AGG_UUID); each compute node has two NUMA children, each NUMA node one
    PF child:

    * cn1: VCPU 24 (ratio 16), MEMORY_MB 131072 (ratio 1.5),
      traits HW_CPU_X86_SSE, HW_CPU_X86_SSE2
    * cn2: VCPU 24 (ratio 16), MEMORY_MB 131072 (ratio 1.5),
      DISK_GB 2000 (reserved 100)
    * ss, ss2: DISK_GB 2000 (reserved 100), MISC_SHARES_VIA_AGGREGATE
    * numa1_1, numa1_2 (under cn1), numa2_1, numa2_2 (under cn2): empty
    * pf1_1, pf1_2, pf2_1, pf2_2 (under the NUMA nodes): SRIOV_NET_VF 8
    """

    def start_fixture(self):
        super().start_fixture()
        b = self.b
        agg = new_uuid()

        cn1 = b.create_provider('cn1', agg)
        cn2 = b.create_provider('cn2', agg)
        ss = b.create_provider('ss', agg)
        ss2 = b.create_provider('ss2', agg)

        numa1_1 = b.create_provider('numa1_1', parent=cn1)
        numa1_2 = b.create_provider('numa1_2', parent=cn1)
        numa2_1 = b.create_provider('numa2_1', parent=cn2)
        numa2_2 = b.create_provider('numa2_2', parent=cn2)

        pf1_1 = b.create_provider('pf1_1', parent=numa1_1)
        pf1_2 = b.create_provider('pf1_2', parent=numa1_2)
        pf2_1 = b.create_provider('pf2_1', parent=numa2_1)
        pf2_2 = b.create_provider('pf2_2', parent=numa2_2)

        os.environ['AGG_UUID'] = agg
        for var, rp in (('CN1_UUID', cn1), ('CN2_UUID', cn2),
                        ('SS_UUID', ss), ('SS2_UUID', ss2),
                        ('NUMA1_1_UUID', numa1_1), ('NUMA1_2_UUID', numa1_2),
                        ('NUMA2_1_UUID', numa2_1), ('NUMA2_2_UUID', numa2_2),
                        ('PF1_1_UUID', pf1_1), ('PF1_2_UUID', pf1_2),
                        ('PF2_1_UUID', pf2_1), ('PF2_2_UUID', pf2_2)):
            os.environ[var] = rp.uuid

        for cn in (cn1, cn2):
            b.add_inventory(cn, 'VCPU', 24, allocation_ratio=16.0)
            b.add_inventory(cn, 'MEMORY_MB', 128 * 1024,
                            allocation_ratio=1.5)
        b.set_traits(cn1, 'HW_CPU_X86_SSE', 'HW_CPU_X86_SSE2')
        b.add_inventory(cn2, 'DISK_GB', 2000, reserved=100,
                        allocation_ratio=1.0)

        for shared in (ss, ss2):
            b.add_inventory(shared, 'DISK_GB', 2000, reserved=100,
                            allocation_ratio=1.0)
            b.set_traits(shared, 'MISC_SHARES_VIA_AGGREGATE')

        for pf in (pf1_1, pf1_2, pf2_1, pf2_2):
            b.add_inventory(pf, 'SRIOV_NET_VF', 8, allocation_ratio=1.0)


class NUMAAggregateFixture(APIFixture):
    """Two resource-less compute nodes whose NUMA children carry the CPUs,
    sharing disk via aggregates:

    * cn1 (aggA): numa1_1 (aggC), numa1_2
    * cn2 (aggA, aggB): numa2_1, numa2_2
    * every NUMA node: VCPU 24 (ratio 16)
    * ss1 (aggA), ss2 (aggC): DISK_GB 2000 (reserved 100),
      MISC_SHARES_VIA_AGGREGATE
    """

    def start_fixture(self):
        super().start_fixture()
        b = self.b
        agg_a, agg_b, agg_c = new_uuid(), new_uuid(), new_uuid()

        cn1 = b.create_provider('cn1', agg_a)
        cn2 = b.create_provider('cn2', agg_a, agg_b)
        ss1 = b.create_provider('ss1', agg_a)
        ss2 = b.create_provider('ss2', agg_c)

        numa1_1 = b.create_provider('numa1_1', agg_c, parent=cn1)
        numa1_2 = b.create_provider('numa1_2', parent=cn1)
        numa2_1 = b.create_provider('numa2_1', parent=cn2)
        numa2_2 = b.create_provider('numa2_2', parent=cn2)

        os.environ['AGGA_UUID'] = agg_a
        os.environ['AGGB_UUID'] = agg_b
        os.environ['AGGC_UUID'] = agg_c
        for var, rp in (('CN1_UUID', cn1), ('CN2_UUID', cn2),
                        ('SS1_UUID', ss1), ('SS2_UUID', ss2),
                        ('NUMA1_1_UUID', numa1_1), ('NUMA1_2_UUID', numa1_2),
                        ('NUMA2_1_UUID', numa2_1), ('NUMA2_2_UUID', numa2_2)):
            os.environ[var] = rp.uuid

        for numa in (numa1_1, numa1_2, numa2_1, numa2_2):
            b.add_inventory(numa, 'VCPU', 24, allocation_ratio=16.0)

        for ss in (ss1, ss2):
            b.add_inventory(ss, 'DISK_GB', 2000, reserved=100,
                            allocation_ratio=1.0)
            b.set_traits(ss, 'MISC_SHARES_VIA_AGGREGATE')


class NUMANetworkFixture(APIFixture):
    """Two compute hosts with NUMA, device and network subtrees:

    * ss1 (aggA): MISC_SHARES_VIA_AGGREGATE, DISK_GB 2000
    * cn1 (aggA): COMPUTE_VOLUME_MULTI_ATTACH, no inventory
      - numa0: HW_NUMA_ROOT; VCPU 4 (2 allocated);
        MEMORY_MB 2048 (min 512, step 256)
        - fpga0: FPGA 1;  pgpu0: VGPU 8
      - numa1: HW_NUMA_ROOT, CUSTOM_FOO; VCPU 4;
        MEMORY_MB 2048 (min 256, max 1024)
        - fpga1_0, fpga1_1: FPGA 1
      - sriov_agent: CUSTOM_VNIC_TYPE_DIRECT
        - esn1: CUSTOM_PHYSNET1, NET_BW_EGR_KILOBIT_PER_SEC 10000
        - esn2: CUSTOM_PHYSNET2, NET_BW_EGR_KILOBIT_PER_SEC 20000
      - ovs_agent: CUSTOM_VNIC_TYPE_NORMAL
        - br_int: CUSTOM_PHYSNET0, NET_BW_EGR_KILOBIT_PER_SEC 1000
    * cn2 (aggA): CUSTOM_FOO; VCPU 8 (3 allocated);
      MEMORY_MB 2048 (min 1024, step 128); DISK_GB 1000
      - nic1 (CUSTOM_HW_NIC_ROOT): pf1_1 (PHYSNET1), pf1_2 (PHYSNET2),
        CUSTOM_VF 4 each
      - nic2 (CUSTOM_HW_NIC_ROOT): pf2_1..pf2_4 (PHYSNET1, 2, 1, 2),
        CUSTOM_VF 2 each
      - nic3 (CUSTOM_HW_NIC_ROOT): pf3_1 (PHYSNET1), CUSTOM_VF 8

    The two allocations belong to user "numafx-user", project
    "numafx-project".
    """

    # Pre-created by DeepNUMANetworkFixture (with extra ancestors).
    cn1 = None
    cn2 = None

    def start_fixture(self):
        super().start_fixture()
        self.make_entities()

    def make_entities(self):
        b = self.b
        agg_a = new_uuid()
        os.environ['AGGA_UUID'] = agg_a

        ss1 = b.create_provider('ss1', agg_a)
        b.set_traits(ss1, 'MISC_SHARES_VIA_AGGREGATE')
        b.add_inventory(ss1, 'DISK_GB', 2000)
        os.environ['SS1_UUID'] = ss1.uuid

        if self.cn1 is None:
            self.cn1 = b.create_provider('cn1', agg_a)
        b.set_aggregates(self.cn1, agg_a)
        b.set_traits(self.cn1, 'COMPUTE_VOLUME_MULTI_ATTACH')
        os.environ['CN1_UUID'] = self.cn1.uuid

        numas = []
        for i in (0, 1):
            numa = b.create_provider('numa%d' % i, parent=self.cn1)
            traits = ['HW_NUMA_ROOT'] + (['CUSTOM_FOO'] if i == 1 else [])
            b.set_traits(numa, *traits)
            b.add_inventory(numa, 'VCPU', 4)
            numas.append(numa)
            os.environ['NUMA%d_UUID' % i] = numa.uuid
        b.add_inventory(numas[0], 'MEMORY_MB', 2048,
                        min_unit=512, step_size=256)
        b.add_inventory(numas[1], 'MEMORY_MB', 2048,
                        min_unit=256, max_unit=1024)
        user, project = 'numafx-user', 'numafx-project'
        b.allocate(numas[0], {'VCPU': 2}, project, user)

        fpga = b.create_provider('fpga0', parent=numas[0])
        b.add_inventory(fpga, 'FPGA', 1)
        os.environ['FPGA0_UUID'] = fpga.uuid

        pgpu = b.create_provider('pgpu0', parent=numas[0])
        b.add_inventory(pgpu, 'VGPU', 8)
        os.environ['PGPU0_UUID'] = pgpu.uuid

        for i in (0, 1):
            fpga = b.create_provider('fpga1_%d' % i, parent=numas[1])
            b.add_inventory(fpga, 'FPGA', 1)
            os.environ['FPGA1_%d_UUID' % i] = fpga.uuid

        agent = b.create_provider('sriov_agent', parent=self.cn1)
        b.set_traits(agent, 'CUSTOM_VNIC_TYPE_DIRECT')
        os.environ['SRIOV_AGENT_UUID'] = agent.uuid
        for i in (1, 2):
            dev = b.create_provider('esn%d' % i, parent=agent)
            b.set_traits(dev, 'CUSTOM_PHYSNET%d' % i)
            b.add_inventory(dev, 'NET_BW_EGR_KILOBIT_PER_SEC', 10000 * i)
            os.environ['ESN%d_UUID' % i] = dev.uuid

        agent = b.create_provider('ovs_agent', parent=self.cn1)
        b.set_traits(agent, 'CUSTOM_VNIC_TYPE_NORMAL')
        os.environ['OVS_AGENT_UUID'] = agent.uuid
        dev = b.create_provider('br_int', parent=agent)
        b.set_traits(dev, 'CUSTOM_PHYSNET0')
        b.add_inventory(dev, 'NET_BW_EGR_KILOBIT_PER_SEC', 1000)
        os.environ['BR_INT_UUID'] = dev.uuid

        if self.cn2 is None:
            self.cn2 = b.create_provider('cn2')
        b.set_aggregates(self.cn2, agg_a)
        b.add_inventory(self.cn2, 'VCPU', 8)
        b.allocate(self.cn2, {'VCPU': 3}, project, user)
        b.add_inventory(self.cn2, 'MEMORY_MB', 2048,
                        min_unit=1024, step_size=128)
        b.add_inventory(self.cn2, 'DISK_GB', 1000)
        b.set_traits(self.cn2, 'CUSTOM_FOO')
        os.environ['CN2_UUID'] = self.cn2.uuid

        nics = []
        for i in (1, 2, 3):
            nic = b.create_provider('nic%d' % i, parent=self.cn2)
            b.set_traits(nic, 'CUSTOM_HW_NIC_ROOT')
            nics.append(nic)
            os.environ['NIC%d_UUID' % i] = nic.uuid
        # (suffix, parent nic, physnet, VF count)
        pfs = [('1_1', 0, 1, 4), ('1_2', 0, 2, 4),
               ('2_1', 1, 1, 2), ('2_2', 1, 2, 2),
               ('2_3', 1, 1, 2), ('2_4', 1, 2, 2),
               ('3_1', 2, 1, 8)]
        for suffix, nic, physnet, vfs in pfs:
            pf = b.create_provider('pf%s' % suffix, parent=nics[nic])
            b.set_traits(pf, 'CUSTOM_PHYSNET%d' % physnet)
            b.add_inventory(pf, 'CUSTOM_VF', vfs)
            os.environ['PF%s_UUID' % suffix] = pf.uuid


class DeepNUMANetworkFixture(NUMANetworkFixture):
    """NUMANetworkFixture with cn1 and cn2 moved under empty ancestors:
    gp1 -> p1 -> cn1 and gp1 -> p2 -> cn2."""

    def make_entities(self):
        b = self.b
        gp1 = b.create_provider('gp1')
        p1 = b.create_provider('p1', parent=gp1)
        p2 = b.create_provider('p2', parent=gp1)
        self.cn1 = b.create_provider('cn1', parent=p1)
        self.cn2 = b.create_provider('cn2', parent=p2)
        super().make_entities()


class NonSharedStorageFixture(APIFixture):
    """Three compute nodes cn1..cn3, each VCPU 24, MEMORY_MB 131072,
    DISK_GB 2000; AGGA/B/C_UUID are exported but associated with nothing."""

    def start_fixture(self):
        super().start_fixture()
        b = self.b
        for name in ('AGGA_UUID', 'AGGB_UUID', 'AGGC_UUID'):
            os.environ[name] = new_uuid()
        cns = [b.create_provider('cn%d' % i) for i in (1, 2, 3)]
        for i, cn in enumerate(cns, 1):
            os.environ['CN%d_UUID' % i] = cn.uuid
        for cn in cns:
            b.add_inventory(cn, 'VCPU', 24)
            b.add_inventory(cn, 'MEMORY_MB', 128 * 1024)
            b.add_inventory(cn, 'DISK_GB', 2000)


class CORSFixture(APIFixture):
    """Empty service with the CORS middleware enabled."""

    SERVER_MODE = {'cors_allowed_origin': 'http://valid.example.com',
                   'cors_allow_headers': ['openstack-api-version']}


class GranularFixture(APIFixture):
    """Three compute nodes and three sharing providers for granular
    request tests (AGGA, AGGB, AGGC are the aggregates):

    * cn_left (aggA): VCPU 8, MEMORY_MB 4096, DISK_GB 500, VGPU 8,
      SRIOV_NET_VF 8, CUSTOM_NET_MBPS 4000; HW_CPU_X86_AVX,
      HW_CPU_X86_AVX2, HW_GPU_API_DXVA, HW_NIC_DCB_PFC, CUSTOM_FOO
    * cn_middle (aggA, aggB): VCPU 8, MEMORY_MB 4096, SRIOV_NET_VF 8,
      CUSTOM_NET_MBPS 4000; HW_CPU_X86_AVX, HW_CPU_X86_AVX2,
      HW_CPU_X86_SSE, HW_NIC_ACCEL_TLS
    * cn_right (aggB, aggC): VCPU 8, MEMORY_MB 4096, DISK_GB 500,
      VGPU 8 (max_unit 2); HW_CPU_X86_MMX, HW_GPU_API_DXVA, CUSTOM_DISK_SSD
    * shr_disk_1 (aggA): DISK_GB 1000; MISC_SHARES_VIA_AGGREGATE,
      CUSTOM_DISK_SSD
    * shr_disk_2 (aggA, aggB): DISK_GB 1000; MISC_SHARES_VIA_AGGREGATE
    * shr_net (aggC): SRIOV_NET_VF 16, CUSTOM_NET_MBPS 40000;
      MISC_SHARES_VIA_AGGREGATE
    """

    def start_fixture(self):
        super().start_fixture()
        b = self.b
        b.ensure_resource_class('CUSTOM_NET_MBPS')

        agg_a, agg_b, agg_c = new_uuid(), new_uuid(), new_uuid()
        os.environ['AGGA'] = agg_a
        os.environ['AGGB'] = agg_b
        os.environ['AGGC'] = agg_c

        cn_left = b.create_provider('cn_left', agg_a)
        os.environ['CN_LEFT'] = cn_left.uuid
        b.add_inventory(cn_left, 'VCPU', 8)
        b.add_inventory(cn_left, 'MEMORY_MB', 4096)
        b.add_inventory(cn_left, 'DISK_GB', 500)
        b.add_inventory(cn_left, 'VGPU', 8)
        b.add_inventory(cn_left, 'SRIOV_NET_VF', 8)
        b.add_inventory(cn_left, 'CUSTOM_NET_MBPS', 4000)
        b.set_traits(cn_left, 'HW_CPU_X86_AVX', 'HW_CPU_X86_AVX2',
                     'HW_GPU_API_DXVA', 'HW_NIC_DCB_PFC', 'CUSTOM_FOO')

        cn_middle = b.create_provider('cn_middle', agg_a, agg_b)
        os.environ['CN_MIDDLE'] = cn_middle.uuid
        b.add_inventory(cn_middle, 'VCPU', 8)
        b.add_inventory(cn_middle, 'MEMORY_MB', 4096)
        b.add_inventory(cn_middle, 'SRIOV_NET_VF', 8)
        b.add_inventory(cn_middle, 'CUSTOM_NET_MBPS', 4000)
        b.set_traits(cn_middle, 'HW_CPU_X86_AVX', 'HW_CPU_X86_AVX2',
                     'HW_CPU_X86_SSE', 'HW_NIC_ACCEL_TLS')

        cn_right = b.create_provider('cn_right', agg_b, agg_c)
        os.environ['CN_RIGHT'] = cn_right.uuid
        b.add_inventory(cn_right, 'VCPU', 8)
        b.add_inventory(cn_right, 'MEMORY_MB', 4096)
        b.add_inventory(cn_right, 'DISK_GB', 500)
        b.add_inventory(cn_right, 'VGPU', 8, max_unit=2)
        b.set_traits(cn_right, 'HW_CPU_X86_MMX', 'HW_GPU_API_DXVA',
                     'CUSTOM_DISK_SSD')

        shr_disk_1 = b.create_provider('shr_disk_1', agg_a)
        os.environ['SHR_DISK_1'] = shr_disk_1.uuid
        b.add_inventory(shr_disk_1, 'DISK_GB', 1000)
        b.set_traits(shr_disk_1, 'MISC_SHARES_VIA_AGGREGATE',
                     'CUSTOM_DISK_SSD')

        shr_disk_2 = b.create_provider('shr_disk_2', agg_a, agg_b)
        os.environ['SHR_DISK_2'] = shr_disk_2.uuid
        b.add_inventory(shr_disk_2, 'DISK_GB', 1000)
        b.set_traits(shr_disk_2, 'MISC_SHARES_VIA_AGGREGATE')

        shr_net = b.create_provider('shr_net', agg_c)
        os.environ['SHR_NET'] = shr_net.uuid
        b.add_inventory(shr_net, 'SRIOV_NET_VF', 16)
        b.add_inventory(shr_net, 'CUSTOM_NET_MBPS', 40000)
        b.set_traits(shr_net, 'MISC_SHARES_VIA_AGGREGATE')


class OpenPolicyFixture(APIFixture):
    """Empty service whose policy lets any authenticated user do anything
    (every rule but admin_api overridden to "@")."""

    SERVER_MODE = {'open_policy': True}


class SecureRBACPolicyFixture(APIFixture):
    """Empty service with [oslo_policy] enforce_new_defaults = True."""

    SERVER_MODE = {'enforce_new_defaults': True}


class LegacyRBACPolicyFixture(APIFixture):
    """Empty service with the deprecated policy defaults still honoured
    ([oslo_policy] enforce_new_defaults = False, same as APIFixture)."""

    SERVER_MODE = {'enforce_new_defaults': False}


class NeutronQoSMultiSegmentFixture(APIFixture):
    """Four compute trees as Neutron's QoS minimum bandwidth / packet rate
    features build them on multi-segment networks.

    computeN (N = 0, 1, 2): VCPU 8, MEMORY_MB 4096, DISK_GB 500
      - "computeN:Open vSwitch agent": NET_PACKET_RATE_KILOPACKET_PER_SEC
        1000; CUSTOM_VNIC_TYPE_NORMAL
        - "...:br-ex": NET_BW_EGR/IGR_KILOBIT_PER_SEC 5000 each;
          CUSTOM_VNIC_TYPE_NORMAL + physnet
      - "computeN:NIC Switch agent": CUSTOM_VNIC_TYPE_DIRECT,
        CUSTOM_VNIC_TYPE_DIRECT_PHYSICAL, CUSTOM_VNIC_TYPE_MACVTAP
        - "...:enp129s0f0": NET_BW_EGR/IGR_KILOBIT_PER_SEC 10000 each;
          the three VNIC traits + physnet
      physnet: compute0 CUSTOM_PHYSNET_OTHER, compute1 CUSTOM_PHYSNET_MSN_S1,
      compute2 CUSTOM_PHYSNET_MSN_S2.

    compute3 has the same shape but both segments (br-ex / enp129s0f0 on
    MSN_S1, br-ex2 / enp129s0f1 on MSN_S2) and only 1000 kbps per device.

    Environment keys are "computeN", "computeN:ovs_agent", "computeN:br_ex",
    "computeN:sriov_agent", "computeN:pf0" (+ "compute3:br_ex2",
    "compute3:pf1"). Like upstream, "compute3:sriov_agent" is set to
    compute2's SR-IOV agent (an upstream quirk; no YAML reads it).
    """

    VNIC_SRIOV = ('CUSTOM_VNIC_TYPE_DIRECT', 'CUSTOM_VNIC_TYPE_DIRECT_PHYSICAL',
                  'CUSTOM_VNIC_TYPE_MACVTAP')

    def _compute(self, n):
        b = self.b
        name = 'compute%d' % n
        cn = b.create_provider(name)
        os.environ[name] = cn.uuid
        b.add_inventory(cn, 'VCPU', 8)
        b.add_inventory(cn, 'MEMORY_MB', 4096)
        b.add_inventory(cn, 'DISK_GB', 500)
        ovs = b.create_provider('%s:Open vSwitch agent' % name, parent=cn)
        os.environ['%s:ovs_agent' % name] = ovs.uuid
        b.add_inventory(ovs, 'NET_PACKET_RATE_KILOPACKET_PER_SEC', 1000)
        b.set_traits(ovs, 'CUSTOM_VNIC_TYPE_NORMAL')
        return cn, ovs

    def _bridge(self, name, suffix, ovs, kbps, physnet):
        b = self.b
        br = b.create_provider('%s:Open vSwitch agent:%s' % (name, suffix),
                               parent=ovs)
        b.add_inventory(br, 'NET_BW_EGR_KILOBIT_PER_SEC', kbps)
        b.add_inventory(br, 'NET_BW_IGR_KILOBIT_PER_SEC', kbps)
        b.set_traits(br, 'CUSTOM_VNIC_TYPE_NORMAL', physnet)
        return br

    def _sriov_agent(self, name, cn):
        agent = self.b.create_provider('%s:NIC Switch agent' % name,
                                       parent=cn)
        self.b.set_traits(agent, *self.VNIC_SRIOV)
        return agent

    def _pf(self, name, dev, agent, kbps, physnet):
        b = self.b
        pf = b.create_provider('%s:NIC Switch agent:%s' % (name, dev),
                               parent=agent)
        b.add_inventory(pf, 'NET_BW_EGR_KILOBIT_PER_SEC', kbps)
        b.add_inventory(pf, 'NET_BW_IGR_KILOBIT_PER_SEC', kbps)
        b.set_traits(pf, *(self.VNIC_SRIOV + (physnet,)))
        return pf

    def start_fixture(self):
        super().start_fixture()
        physnets = ('CUSTOM_PHYSNET_OTHER', 'CUSTOM_PHYSNET_MSN_S1',
                    'CUSTOM_PHYSNET_MSN_S2')
        sriov_agents = {}
        for n, physnet in enumerate(physnets):
            name = 'compute%d' % n
            cn, ovs = self._compute(n)
            br = self._bridge(name, 'br-ex', ovs, 5000, physnet)
            os.environ['%s:br_ex' % name] = br.uuid
            agent = self._sriov_agent(name, cn)
            sriov_agents[n] = agent
            os.environ['%s:sriov_agent' % name] = agent.uuid
            pf = self._pf(name, 'enp129s0f0', agent, 10000, physnet)
            os.environ['%s:pf0' % name] = pf.uuid

        name = 'compute3'
        cn, ovs = self._compute(3)
        br = self._bridge(name, 'br-ex', ovs, 1000, 'CUSTOM_PHYSNET_MSN_S1')
        os.environ['compute3:br_ex'] = br.uuid
        br2 = self._bridge(name, 'br-ex2', ovs, 1000, 'CUSTOM_PHYSNET_MSN_S2')
        os.environ['compute3:br_ex2'] = br2.uuid
        agent = self._sriov_agent(name, cn)
        # Upstream quirk reproduced on purpose (see class docstring).
        os.environ['compute3:sriov_agent'] = sriov_agents[2].uuid
        pf0 = self._pf(name, 'enp129s0f0', agent, 1000,
                       'CUSTOM_PHYSNET_MSN_S1')
        os.environ['compute3:pf0'] = pf0.uuid
        pf1 = self._pf(name, 'enp129s0f1', agent, 1000,
                       'CUSTOM_PHYSNET_MSN_S2')
        os.environ['compute3:pf1'] = pf1.uuid
