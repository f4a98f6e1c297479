// Roles of the handler identity on the app's own resources. The Functions
// host runs with the same identity (AzureWebJobsStorage__clientId), so these
// cover both the host's needs and the handler's.

@description('Principal id of the handler identity.')
param principalId string

@description('The Function App\'s storage account.')
param storageAccountName string

@description('The rotation queue; its poison queue is "<name>-poison".')
param rotationQueueName string

@description('The Application Insights component the app sends telemetry to.')
param appInsightsName string

// Built-in role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource rotationQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: rotationQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: '${rotationQueueName}-poison'
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Storage Queue Data Contributor on the rotation queue: KeyEvent's output
// binding adds messages, RotateServer's trigger reads, updates and deletes
// them. Scoped to the queue, not the account.
resource rotationQueueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rotationQueue.id, principalId, storageQueueDataContributor)
  scope: rotationQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor on the poison queue: the queue extension
// moves a message there after maxDequeueCount failures.
resource poisonQueueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Blob Data Owner on the account: Flex Consumption reads the
// package from the deployment container with this identity, and the host
// keeps its keys (among them the eventgrid_extension system key Event Grid
// delivers with) and its locks in containers it creates itself
// (azure-webjobs-secrets, azure-webjobs-hosts), so a container scope is not
// enough. The account holds nothing but this app's data.
resource blobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor on the account: the Functions host writes
// its diagnostic events to a table it creates (AzureWebJobsStorage__
// tableServiceUri); the handler never reads tables.
resource tableAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageTableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher on the component: local authentication is
// disabled, so telemetry is sent with this identity's token
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
