// The Function App's storage account: the deployment package container,
// the rotation queue and its poison queue, and the container Event Grid
// dead-letters into. Shared keys are off: the host, the handler identity
// and Event Grid all authenticate with Entra ID.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account.')
param location string

@description('Tags of the account.')
param tags object

@description('Replication of the account: geo-redundant, so queued rotations and dead-lettered events survive the loss of a region.')
@allowed([
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_GZRS'

@description('Container that holds the Flex Consumption deployment package.')
@minLength(3)
@maxLength(63)
param deploymentContainerName string

@description('Container Event Grid writes undeliverable events to.')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string

@description('Queue KeyEvent writes and RotateServer reads (function.json queueName).')
@minLength(3)
@maxLength(56)
param rotationQueueName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // The Functions host on Flex Consumption reaches its storage over the
  // public endpoint unless the app joins a virtual network, which this
  // template does not do. Access is Entra-only: shared keys are off.
  // checkov:skip=CKV_AZURE_35: no VNet integration, so the default network action must allow the Functions host; no key or anonymous access exists
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Flex Consumption supports identity-based AzureWebJobsStorage and
    // deployment storage, so no connection string with a key is needed.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource rotationQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: rotationQueueName
}

// The queue extension moves a message here after maxDequeueCount failed
// attempts (host.json); created up front so its role scope exists.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${rotationQueueName}-poison'
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
