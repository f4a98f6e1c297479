// The whole deployment of the CMK rotation handler, into one resource group:
// the Flex Consumption Function App and its storage, monitoring and identity,
// the identity's roles wherever the handler reads or writes, and the Event
// Grid wiring from each vault to the KeyEvent function.
//
// Two stages (README "Deploy"): run it once with deployEventSubscriptions =
// false, deploy the code package, then run it again with true. Event Grid
// checks an AzureFunction endpoint when the subscription is created, and the
// KeyEvent function only exists once the package is deployed.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------
// Naming and placement

@description('Azure region of the Function App, its storage and monitoring. Defaults to the resource group\'s region.')
@minLength(1)
param location string = resourceGroup().location

@description('Lowercase letters and digits that start every resource name (3-11 characters).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'cmkrot'

@description('Tags put on every resource this template creates.')
param tags object = {}

// ---------------------------------------------------------------------------
// What the handler watches and may change

@description('Key Vaults whose key events drive rotations. Each item: { name, resourceGroup, subscriptionId (optional, default: this subscription), existingSystemTopicName (optional: the vault\'s Event Grid system topic when it already has one; a vault can have only one), existingSystemTopicResourceGroup (optional: that topic\'s resource group when it is not the vault\'s; same subscription), keyNames (optional: only events for these key names are delivered) }. The vaults must use Azure RBAC for data access.')
@minLength(1)
param vaults array

@description('Subscription ids searched for servers with Resource Graph (the CMK_SUBSCRIPTIONS app setting). The handler may read flexible servers in each.')
@minLength(1)
param discoverySubscriptionIds array

@description('Resource groups whose PostgreSQL flexible servers the handler may update. Each item: { subscriptionId, resourceGroup }; the subscription must be one of discoverySubscriptionIds (servers are found there, and the update\'s status is read there). Nothing outside them is writable.')
@minLength(1)
param serverResourceGroups array

@description('User-assigned identities that the servers name in dataEncryption (primary and geo-backup). Each item: { subscriptionId, resourceGroup, name }. The handler\'s PATCH names them, and the service may check that the caller can assign them: Managed Identity Operator on each. List them all.')
param serverIdentities array = []

// ---------------------------------------------------------------------------
// Event Grid

@description('Stage 2 switch: create the event subscriptions. Leave false until the code package is deployed (Event Grid checks that the KeyEvent function exists).')
param deployEventSubscriptions bool = false

@description('Name of the event subscription on each vault\'s system topic.')
@minLength(3)
@maxLength(64)
param eventSubscriptionName string = 'cmk-rotation-key-events'

@description('Event Grid delivery attempts per event before it is dead-lettered (1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered (1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// ---------------------------------------------------------------------------
// Hosting

@description('Memory of one Flex Consumption instance in MB. The handler needs little; 512 is the smallest size.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('Most instances Flex Consumption may scale out to. Fewer instances mean fewer parallel calls to Resource Manager.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Replication of the Function App\'s storage account (deployment package, rotation queues, dead-lettered events). Geo-redundant; use Standard_GRS in regions without zones.')
@allowed([
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_GZRS'

@description('Days the Log Analytics workspace keeps the handler\'s logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

// ---------------------------------------------------------------------------
// App settings of the handler (README "Configuration"); defaults are the
// handler's own, so leaving a parameter alone changes nothing.

@description('CMK_OPT_IN_TAG: name=value; when set, only servers with this tag are rotated. Empty: every server that uses the key.')
param optInTag string = ''

@description('CMK_KEYVAULT_DNS_SUFFIXES: comma-separated vault host suffixes the handler will call. Default: this cloud\'s Key Vault suffix (.vault.azure.net in Azure public).')
@minLength(1)
param keyVaultDnsSuffixes string = environment().suffixes.keyvaultDns

@description('CMK_ARM_ENDPOINT: Resource Manager. Default: this cloud\'s (https://management.azure.com in Azure public).')
@minLength(1)
param armEndpoint string = environment().resourceManager

@description('CMK_ARM_AUDIENCE: token audience for Resource Manager and Resource Graph. Default: this cloud\'s Resource Manager.')
@minLength(1)
param armAudience string = environment().resourceManager

@description('CMK_RESOURCE_GRAPH_ENDPOINT: Resource Graph. Empty: the same as CMK_ARM_ENDPOINT.')
param resourceGraphEndpoint string = ''

@description('CMK_KEYVAULT_AUDIENCE: token audience for Key Vault. Default: this cloud\'s (https://vault.azure.net in Azure public).')
@minLength(1)
param keyVaultAudience string = 'https://${substring(environment().suffixes.keyvaultDns, 1)}'

@description('CMK_POSTGRES_API_VERSION: api-version of Microsoft.DBforPostgreSQL/flexibleServers.')
@minLength(10)
param postgresApiVersion string = '2025-08-01'

@description('CMK_KEYVAULT_API_VERSION: Key Vault data-plane api-version.')
@minLength(3)
param keyVaultApiVersion string = '7.5'

@description('CMK_RESOURCE_GRAPH_API_VERSION: Resource Graph api-version.')
@minLength(10)
param resourceGraphApiVersion string = '2024-04-01'

@description('CMK_EVENT_BUDGET_SECS: seconds the KeyEvent function may spend, waits included. Keep it under Event Grid\'s 30 s.')
@minValue(1)
@maxValue(25)
param eventBudgetSecs int = 20

@description('CMK_OPERATION_BUDGET_SECS: seconds one server update may take, polling included. Keep it under host.json functionTimeout (30 min).')
@minValue(1)
@maxValue(1740)
param operationBudgetSecs int = 1500

@description('CMK_DEFAULT_RETRY_AFTER_SECS: poll pace when Resource Manager sends no Retry-After.')
@minValue(1)
@maxValue(600)
param defaultRetryAfterSecs int = 60

@description('CMK_MIN_POLL_INTERVAL_MS: floor under Retry-After between polls.')
@minValue(10)
@maxValue(600000)
param minPollIntervalMs int = 1000

@description('CMK_BUSY_POLL_MS: pace of looking again at a busy server (another operation in progress) within one delivery.')
@minValue(100)
@maxValue(600000)
param busyPollMs int = 30000

@description('CMK_HTTP_TIMEOUT_SECS: timeout of one outbound request.')
@minValue(1)
@maxValue(120)
param httpTimeoutSecs int = 30

@description('CMK_MAX_BODY_BYTES: larger invocation bodies are refused with 413.')
@minValue(1024)
@maxValue(104857600)
param maxBodyBytes int = 1048576

@description('CMK_RECONCILE_SCHEDULE: six-field NCRONTAB of the Reconcile timer, the safety net for missed events (the host needs a value).')
@minLength(11)
param reconcileSchedule string = '0 0 */6 * * *'

@description('CMK_LOG_FORMAT: text, or json for one JSON object per line.')
@allowed([
  'text'
  'json'
])
param logFormat string = 'text'

// ---------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, namePrefix)
var functionAppName = '${namePrefix}-func-${suffix}'
var storageAccountName = take('st${namePrefix}${suffix}', 24)

// Names the function app's bindings use: function-app/*/function.json.
var rotationQueueName = 'cmk-rotations'
var eventFunctionName = 'KeyEvent'

var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'

module identity 'modules/identity.bicep' = {
  name: 'cmk-identity'
  params: {
    name: '${namePrefix}-id-${suffix}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'cmk-monitoring'
  params: {
    workspaceName: '${namePrefix}-log-${suffix}'
    appInsightsName: '${namePrefix}-appi-${suffix}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'cmk-storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    rotationQueueName: rotationQueueName
  }
}

// The handler identity's rights on the app's own storage and telemetry.
module appAccess 'modules/app-access.bicep' = {
  name: 'cmk-app-access'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    rotationQueueName: rotationQueueName
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'cmk-function-app'
  dependsOn: [
    // The host reads its queues and the package as soon as it starts.
    appAccess
  ]
  params: {
    name: functionAppName
    planName: '${namePrefix}-plan-${suffix}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    handlerSettings: {
      CMK_SUBSCRIPTIONS: join(discoverySubscriptionIds, ',')
      CMK_OPT_IN_TAG: optInTag
      CMK_KEYVAULT_DNS_SUFFIXES: keyVaultDnsSuffixes
      CMK_ARM_ENDPOINT: armEndpoint
      CMK_ARM_AUDIENCE: armAudience
      CMK_RESOURCE_GRAPH_ENDPOINT: resourceGraphEndpoint
      CMK_KEYVAULT_AUDIENCE: keyVaultAudience
      CMK_POSTGRES_API_VERSION: postgresApiVersion
      CMK_KEYVAULT_API_VERSION: keyVaultApiVersion
      CMK_RESOURCE_GRAPH_API_VERSION: resourceGraphApiVersion
      CMK_EVENT_BUDGET_SECS: string(eventBudgetSecs)
      CMK_OPERATION_BUDGET_SECS: string(operationBudgetSecs)
      CMK_DEFAULT_RETRY_AFTER_SECS: string(defaultRetryAfterSecs)
      CMK_MIN_POLL_INTERVAL_MS: string(minPollIntervalMs)
      CMK_BUSY_POLL_MS: string(busyPollMs)
      CMK_HTTP_TIMEOUT_SECS: string(httpTimeoutSecs)
      CMK_MAX_BODY_BYTES: string(maxBodyBytes)
      CMK_LOG_FORMAT: logFormat
      CMK_RECONCILE_SCHEDULE: reconcileSchedule
    }
  }
}

// ---------------------------------------------------------------------------
// Roles of the handler identity outside this resource group

// Two custom roles, defined once in this subscription and assignable only
// where the parameters say: no built-in role is as narrow.
module roleDefinitions 'modules/role-definitions.bicep' = {
  name: 'cmk-role-definitions-${suffix}'
  scope: subscription()
  params: {
    roleNameSuffix: functionAppName
    serverScopes: [for rg in serverResourceGroups: '/subscriptions/${rg.subscriptionId}/resourceGroups/${rg.resourceGroup}']
    discoveryScopes: [for id in discoverySubscriptionIds: '/subscriptions/${id}']
  }
}

// Read flexible servers in each discovery subscription: Resource Graph only
// returns what the caller may read.
module discoveryAccess 'modules/discovery-access.bicep' = [for (id, i) in discoverySubscriptionIds: {
  name: 'cmk-discovery-${i}-${suffix}'
  scope: subscription(id)
  params: {
    principalId: identity.outputs.principalId
    roleDefinitionName: roleDefinitions.outputs.serverReaderRoleName
  }
}]

// Update servers, and follow the update, in the configured resource groups.
module serverAccess 'modules/server-access.bicep' = [for (rg, i) in serverResourceGroups: {
  name: 'cmk-servers-${i}-${suffix}'
  scope: resourceGroup(rg.subscriptionId, rg.resourceGroup)
  params: {
    principalId: identity.outputs.principalId
    roleDefinitionName: roleDefinitions.outputs.serverOperatorRoleName
  }
}]

// Let the PATCH name the servers' own user-assigned identities.
module identityAccess 'modules/identity-access.bicep' = [for (mi, i) in serverIdentities: {
  name: 'cmk-server-identity-${i}-${suffix}'
  scope: resourceGroup(mi.subscriptionId, mi.resourceGroup)
  params: {
    principalId: identity.outputs.principalId
    identityName: mi.name
  }
}]

// ---------------------------------------------------------------------------
// Event Grid: one system topic per vault (created, or the existing one), the
// topic identity's right to dead-letter, then the subscription.

module vaultEvents 'modules/vault.bicep' = [for (v, i) in vaults: {
  name: 'cmk-vault-${i}-${suffix}'
  scope: resourceGroup(contains(v, 'subscriptionId') ? v.subscriptionId : subscription().subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    existingSystemTopicName: contains(v, 'existingSystemTopicName') ? v.existingSystemTopicName : ''
    existingSystemTopicResourceGroup: contains(v, 'existingSystemTopicResourceGroup') ? v.existingSystemTopicResourceGroup : v.resourceGroup
    principalId: identity.outputs.principalId
    tags: tags
  }
}]

module deadLetterAccess 'modules/dead-letter-access.bicep' = [for (v, i) in vaults: {
  name: 'cmk-dead-letter-${i}'
  params: {
    storageAccountName: storage.outputs.name
    containerName: deadLetterContainerName
    principalId: vaultEvents[i].outputs.systemTopicPrincipalId
  }
}]

module keyEvents 'modules/key-events.bicep' = [for (v, i) in vaults: if (deployEventSubscriptions) {
  name: 'cmk-key-events-${i}-${suffix}'
  // The subscription lives beside its topic: a reused topic may sit in
  // another resource group than the vault.
  scope: resourceGroup(contains(v, 'subscriptionId') ? v.subscriptionId : subscription().subscriptionId, contains(v, 'existingSystemTopicResourceGroup') ? v.existingSystemTopicResourceGroup : v.resourceGroup)
  dependsOn: [
    // Event Grid checks the dead-letter identity's access when the
    // subscription is created: the role must exist first.
    deadLetterAccess
  ]
  params: {
    systemTopicName: vaultEvents[i].outputs.systemTopicName
    subscriptionName: eventSubscriptionName
    functionResourceId: '${functionApp.outputs.id}/functions/${eventFunctionName}'
    keyNames: contains(v, 'keyNames') ? v.keyNames : []
    maxDeliveryAttempts: maxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: deadLetterContainerName
  }
}]

// ---------------------------------------------------------------------------
// Outputs, named after the app settings that read them where there is one.

output AZURE_CLIENT_ID string = identity.outputs.clientId
output CMK_SUBSCRIPTIONS string = join(discoverySubscriptionIds, ',')
output AzureWebJobsStorage__blobServiceUri string = storage.outputs.blobEndpoint
output AzureWebJobsStorage__queueServiceUri string = storage.outputs.queueEndpoint
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString

@description('The Function App to deploy the package to (az functionapp deployment source config-zip --name).')
output functionAppName string = functionApp.outputs.name

@description('Principal id of the handler identity, for role checks.')
output handlerPrincipalId string = identity.outputs.principalId

@description('Event Grid system topic of each vault, in the order of the vaults parameter.')
output systemTopicNames array = [for (v, i) in vaults: vaultEvents[i].outputs.systemTopicName]
